"""The results as a markdown table, with ratios and each target marked met / not met."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fqdn_policy.ops.histogram import HistogramSnapshot

# name -> (description, threshold); thresholds in the unit of the compared value.
TARGETS = {
    "qps_ratio": ("saturated QPS ≥ 2x dnsmasq --nftset", 2.0),
    "added_p50_ms": ("added latency p50 ≤ 0.05 ms", 0.05),
    "added_p99_ms": ("added latency p99 ≤ 0.5 ms", 0.5),
    "hold_p99_ms": ("hold for nftables write p99 ≤ 0.2 ms", 0.2),
    "rss_mb": ("agent RSS ≤ 150 MB at 100,000 live elements", 150.0),
    "reload_s": ("reload of 1,000 policies < 1 s", 1.0),
}


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def hold_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The hold-time histogram of the time between two cumulative `agent.stats` readings."""
    counts = tuple(a - b for a, b in zip(after["counts"], before["counts"], strict=True))
    snap = HistogramSnapshot(tuple(after["bounds_s"]), counts, after["sum_s"] - before["sum_s"])
    n = snap.count
    return {
        "count": n,
        "p50_ms": snap.quantile(0.5) * 1000 if n else None,
        "p99_ms": snap.quantile(0.99) * 1000 if n else None,
        "mean_ms": snap.total / n * 1000 if n else None,
    }


def pause_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The collector's pauses between two `agent.stats` readings: how many (by generation), their sum,
    and the largest bucket any of them fell in (an upper bound, like the quantiles)."""
    out = hold_delta(before, after)
    counts = [a - b for a, b in zip(after["counts"], before["counts"], strict=True)]
    bounds = [*after["bounds_s"], float("inf")]
    out["total_ms"] = (after["sum_s"] - before["sum_s"]) * 1000
    out["max_ms"] = max((b * 1000 for b, n in zip(bounds, counts, strict=True) if n), default=None)
    generations = zip(after["by_generation"], before["by_generation"], strict=True)
    out["by_generation"] = [a - b for a, b in generations]
    return out


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios, added latencies and target verdicts from the raw measurements."""
    up, dm, px = (results["targets"].get(k, {}) for k in ("upstream", "dnsmasq_nftset", "fqdn_policy"))
    qps = {k: v.get("saturation", {}).get("qps") for k, v in (("up", up), ("dm", dm), ("px", px))}
    fixed = {k: v.get("fixed_rate", {}) for k, v in (("up", up), ("dm", dm), ("px", px))}
    agent = px.get("agent", {})
    d: dict[str, Any] = {
        "proxy_over_dnsmasq_qps": _ratio(qps["px"], qps["dm"]),
        "proxy_over_upstream_qps": _ratio(qps["px"], qps["up"]),
        "dnsmasq_over_upstream_qps": _ratio(qps["dm"], qps["up"]),
    }
    for who in ("dm", "px"):
        for p in ("p50_ms", "p99_ms", "p999_ms", "avg_ms"):
            d[f"{who}_added_{p}"] = _sub(fixed[who].get(p), fixed["up"].get(p))
    rss = agent.get("rss_full_kb")
    elements = agent.get("elements_full_total")
    # The slower of the two reloads at full sets: the same file re-read, and after an edit.
    reloads = [agent.get(k) for k in ("reload_full_s", "reload_edited_s") if agent.get(k) is not None]
    reload_s = max(reloads) if reloads else None
    target_elements = results["workload"]["spec"]["target_elements"]
    verdicts = {
        "qps_ratio": _verdict(d["proxy_over_dnsmasq_qps"], TARGETS["qps_ratio"][1], higher=True),
        "added_p50_ms": _verdict(d["px_added_p50_ms"], TARGETS["added_p50_ms"][1]),
        "added_p99_ms": _verdict(d["px_added_p99_ms"], TARGETS["added_p99_ms"][1]),
        "hold_p99_ms": _verdict(_hold(px, "fixed_rate", "p99_ms"), TARGETS["hold_p99_ms"][1]),
        "rss_mb": _rss_verdict(rss, elements, target_elements),
        "reload_s": _verdict(reload_s, TARGETS["reload_s"][1], strict=True),
    }
    d["verdicts"] = verdicts
    return d


def _hold(px: dict[str, Any], run: str, key: str, what: str = "hold_for_write") -> float | None:
    value = px.get(what, {}).get(run, {}).get(key)
    return float(value) if value is not None else None


def _pauses(px: dict[str, Any], run: str) -> str:
    pauses = px.get("gc_pauses", {}).get(run)
    if not pauses:
        return "n/a"
    generations = "/".join(str(n) for n in pauses["by_generation"])
    return f"{pauses['count']} ({generations}), {_f(pauses['total_ms'])}, {_f(pauses['max_ms'])}"


def _rss_verdict(rss_kb: int | None, elements: int | None, target: int) -> str:
    """RSS only grows with elements, so being over the limit below the target count is a verdict too."""
    if rss_kb is None or elements is None:
        return "not measured"
    limit = TARGETS["rss_mb"][1]
    if elements >= target:
        return _verdict(rss_kb / 1024, limit)
    if rss_kb / 1024 > limit:
        return f"NOT met (already {rss_kb / 1024:.0f} MB at {elements:,} elements)"
    return f"not measured (only {elements:,} elements reached)"


def _verdict(value: float | None, limit: float, *, higher: bool = False, strict: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = value >= limit if higher else (value < limit if strict else value <= limit)
    return "met" if ok else "NOT met"


def markdown(results: dict[str, Any]) -> str:
    d = results["derived"]
    t = results["targets"]
    up, dm, px = (t.get(k, {}) for k in ("upstream", "dnsmasq_nftset", "fqdn_policy"))
    agent = px.get("agent", {})
    fill = agent.get("fill_run", {})
    v = d["verdicts"]
    rate = results["config"]["rate"]
    spec = results["workload"]["spec"]

    def sat(x: dict[str, Any], key: str) -> Any:
        return x.get("saturation", {}).get(key)

    def fix(x: dict[str, Any], key: str) -> Any:
        return x.get("fixed_rate", {}).get(key)

    def cls(x: dict[str, Any], which: str, key: str) -> Any:
        return x.get("fixed_rate", {}).get(which, {}).get(key)

    def each(label: str, key: str, note: str = "") -> tuple[str, str, str, str, str, str]:
        """A row of one whole number per server, read from the server's top level."""
        return (label, _f(up.get(key), 0), _f(dm.get(key), 0), _f(px.get(key), 0), note, "")

    def per_query(x: dict[str, Any], run: str = "saturation") -> str:
        split = x.get(f"{run}_cpu_us_per_query") or {}
        if split.get("user") is None:
            return "-"
        return f"{_f(split['user'], 1)} / {_f(split['system'], 1)}"

    rows: list[tuple[str, str, str, str, str, str]] = [
        (
            "saturated QPS (UDP, no -Q)",
            _f(sat(up, "qps"), 0),
            _f(sat(dm, "qps"), 0),
            _f(sat(px, "qps"), 0),
            f"proxy/dnsmasq {_f(d['proxy_over_dnsmasq_qps'], 2)}x; "
            f"proxy/upstream {_f(d['proxy_over_upstream_qps'], 3)}x; "
            f"dnsmasq/upstream {_f(d['dnsmasq_over_upstream_qps'], 3)}x",
            f"≥ 2x dnsmasq: **{v['qps_ratio']}**",
        ),
        each("server CPU % during saturation (100 = one core)", "saturation_cpu_percent"),
        (
            "server CPU per answered query at saturation, us (user / system)",
            per_query(up),
            per_query(dm),
            per_query(px),
            "system: the socket calls and the kernel's path for each datagram, and set writes",
            "",
        ),
        (
            "lost / answered, saturation",
            f"{_f(sat(up, 'lost'))} / {_f(sat(up, 'completed'))}",
            f"{_f(sat(dm, 'lost'))} / {_f(sat(dm, 'completed'))}",
            f"{_f(sat(px, 'lost'))} / {_f(sat(px, 'completed'))}",
            "",
            "",
        ),
        each(f"server CPU % at {rate:,} qps (100 = one core)", "fixed_rate_cpu_percent"),
        (
            f"server CPU per answered query at {rate:,} qps, us (user / system)",
            per_query(up, "fixed_rate"),
            per_query(dm, "fixed_rate"),
            per_query(px, "fixed_rate"),
            "most answers here are first answers (a kernel write and a log line each)",
            "",
        ),
        each(
            f"host steal time during the {rate:,} qps run, ms (both vCPUs)",
            "fixed_rate_steal_ms",
            "the hypervisor running something else: every process stops, without a context switch",
        ),
        (
            f"achieved QPS at fixed {rate:,} qps",
            _f(fix(up, "qps"), 0),
            _f(fix(dm, "qps"), 0),
            _f(fix(px, "qps"), 0),
            "",
            "",
        ),
    ]
    for label, key, target in (
        ("p50", "p50_ms", f"added ≤ 0.05 ms: **{v['added_p50_ms']}**"),
        ("p99", "p99_ms", f"added ≤ 0.5 ms: **{v['added_p99_ms']}**"),
        ("p99.9", "p999_ms", ""),
        ("average", "avg_ms", ""),
    ):
        rows.append(
            (
                f"latency {label} at {rate:,} qps, ms",
                _f(fix(up, key), 3),
                _f(fix(dm, key), 3),
                _f(fix(px, key), 3),
                f"added over upstream: dnsmasq {_f(d[f'dm_added_{key}'], 3)}, "
                f"proxy {_f(d[f'px_added_{key}'], 3)}",
                target,
            )
        )
    rows += [
        (
            f"lost / answered at {rate:,} qps",
            f"{_f(fix(up, 'lost'))} / {_f(fix(up, 'completed'))}",
            f"{_f(fix(dm, 'lost'))} / {_f(fix(dm, 'completed'))}",
            f"{_f(fix(px, 'lost'))} / {_f(fix(px, 'completed'))}",
            "",
            "",
        ),
        (
            f"hold for the nftables write p50 / p99, ms (at {rate:,} qps)",
            "n/a",
            "n/a",
            f"{_f(_hold(px, 'fixed_rate', 'p50_ms'))} / {_f(_hold(px, 'fixed_rate', 'p99_ms'))}",
            f"agent histogram (bucket upper bounds), {_f(_hold(px, 'fixed_rate', 'count'), 0)} held answers",
            f"p99 ≤ 0.2 ms: **{v['hold_p99_ms']}**",
        ),
        (
            f"of which the nftables write p50 / p99, ms (at {rate:,} qps)",
            "n/a",
            "n/a",
            f"{_f(_hold(px, 'fixed_rate', 'p50_ms', 'nft_call_time'))} / "
            f"{_f(_hold(px, 'fixed_rate', 'p99_ms', 'nft_call_time'))}",
            f"{_f(_hold(px, 'fixed_rate', 'count', 'nft_call_time'), 0)} transactions",
            "",
        ),
        (
            "hold for the nftables write p50 / p99, ms (saturation)",
            "n/a",
            "n/a",
            f"{_f(_hold(px, 'saturation', 'p50_ms'))} / {_f(_hold(px, 'saturation', 'p99_ms'))}",
            f"{_f(_hold(px, 'saturation', 'count'), 0)} held answers (the rest needed no write)",
            "",
        ),
        *(
            (
                f"garbage collections: count (by generation), total ms, longest ≤ ms ({label})",
                "n/a",
                "n/a",
                _pauses(px, run),
                "agent histogram `gc_pauses`; every answer in flight waits for a collection",
                "",
            )
            for run, label in (("fixed_rate", f"at {rate:,} qps"), ("saturation", "saturation"))
        ),
        (
            "estimate only: p50 allowed - p50 not-allowed names, ms",
            _f(_sub(cls(up, "allowed", "p50_ms"), cls(up, "not_allowed", "p50_ms")), 3),
            _f(_sub(cls(dm, "allowed", "p50_ms"), cls(dm, "not_allowed", "p50_ms")), 3),
            _f(_sub(cls(px, "allowed", "p50_ms"), cls(px, "not_allowed", "p50_ms")), 3),
            "client-side view of the write's cost; not the hold-time metric",
            "",
        ),
        (
            "set elements after the runs",
            "n/a",
            _f(dm.get("elements_total")),
            _f(agent.get("elements_main_total")),
            "dnsmasq: its s4/s6 sets; proxy: allow_v4*/allow_v6*",
            "",
        ),
        (
            "agent RSS right after startup (no elements), MB",
            "",
            "",
            _f(_mb(agent.get("rss_idle_kb")), 1),
            "policy loaded, nothing resolved yet",
            "",
        ),
        (
            "agent RSS after saturation, MB",
            "",
            "",
            _f(_mb(agent.get("rss_main_kb")), 1),
            f"with {_f(agent.get('elements_main_total'))} elements",
            "",
        ),
        (
            f"agent RSS with ~{spec['target_elements']:,} live elements, MB",
            "",
            "",
            _f(_mb(agent.get("rss_full_kb")), 1),
            f"{_f(agent.get('elements_full_total'))} elements counted with nft; peak (VmHWM) "
            f"{_f(_mb(agent.get('hwm_full_kb')), 1)} MB",
            f"≤ 150 MB: **{v['rss_mb']}**",
        ),
        (
            "fill run: answered / lost, achieved QPS",
            "",
            "",
            f"{_f(fill.get('completed'))} / {_f(fill.get('lost'))}, {_f(fill.get('qps'), 0)}",
            f"one pass over {_f(results['workload']['fill_names'])} extra allowed names"
            + (" (overran -l, interrupted)" if fill.get("interrupted") else ""),
            "",
        ),
        (
            "startup to agent.ready, s",
            "",
            "",
            _f(agent.get("startup_s"), 2),
            f"{_f(spec['policies'])} policies x {spec['names_per_policy']} names, {spec['pods']} pods",
            "",
        ),
        (
            "reload SIGHUP → policy.loaded, s (empty sets)",
            "",
            "",
            _f(agent.get("reload_empty_s"), 2),
            "same file re-read (its documents are cached)",
            "",
        ),
        (
            f"reload SIGHUP → policy.loaded, s (at {_f(agent.get('elements_full_total'))} elements)",
            "",
            "",
            _f(agent.get("reload_full_s"), 2),
            "same file re-read (its documents are cached: nothing parsed again)",
            "",
        ),
        (
            "agent RSS after that reload, MB",
            "",
            "",
            _f(_mb(agent.get("rss_after_reload_kb")), 1),
            "",
            "",
        ),
        (
            "reload SIGHUP → policy.loaded, s (one policy of the querying pod edited)",
            "",
            "",
            _f(agent.get("reload_edited_s"), 2),
            "one document parsed again; the names under its matchers matched again",
            f"< 1 s (slower reload): **{v['reload_s']}**",
        ),
        (
            "agent RSS after the edit's reload, MB",
            "",
            "",
            _f(_mb(agent.get("rss_after_edit_kb")), 1),
            "",
            "",
        ),
    ]
    head = (
        "| metric | (1) upstream dnsmasq, direct | (2) dnsmasq --nftset, cache off | (3) fqdn-policy | "
        "ratios / notes | target |\n|---|---:|---:|---:|---|---|\n"
    )
    table = head + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"
    errors = [f"- {name}: {x['error']}" for name, x in t.items() if x.get("error")]
    return table + (
        "\nErrors (numbers before the failed step are kept):\n" + "\n".join(errors) + "\n" if errors else ""
    )


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024


def main(argv: list[str] | None = None) -> int:
    """Re-render a results file: `python -m bench.report bench/results/<stamp>.json`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    results["derived"] = derive(results)
    print(markdown(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
