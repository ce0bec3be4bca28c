"""Compare agent variants (different `run` flags) in one lab, interleaved, against the bare upstream.

    sudo .venv/bin/python -m bench.ab --variant asyncio="--event-loop asyncio" \\
        --variant uvloop="--event-loop uvloop" [--rounds 3] [--seconds 8]

To compare code versions, give a variant another checkout: `git worktree add /tmp/base main`, then
`--variant base= --tree base=/tmp/base --variant new=` runs `base` from /tmp/base (this venv's
interpreter and packages, that tree's code).

The machine is noisy, so each round measures the upstream first and then every variant in turn (a fresh
agent each time, same workload as bench.run), and the report gives each variant's saturated QPS as a
ratio to the upstream of its own round, plus latency added over the upstream at a fixed rate. The
median over rounds is the number to quote. A quicker tool than bench.run for deciding between two
designs; bench.run remains the benchmark of record (dnsmasq, memory, reloads).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import dnsperf, report, services, workload
from fqdn_policy.ops.config import DEFAULT_METRICS
from tests.lab.addressing import PodSpec
from tests.lab.netlab import Lab

POD = "pod-a"


def is_checkout(path: Path) -> bool:
    """A tree the agent can run from: this layout (fqdn_policy/) or one from before it (agent/cli.py)."""
    return (path / "fqdn_policy" / "__main__.py").is_file() or (path / "agent" / "cli.py").is_file()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar='NAME="ARGS"',
        help="a label and the extra `fqdn-policy run` arguments (repeatable)",
    )
    p.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="run variant NAME's agent from the checkout at PATH (repeatable)",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0, help="length of each saturation run")
    p.add_argument("--latency-seconds", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--outstanding", type=int, default=100)
    p.add_argument("--min-ttl", type=int, default=600)
    p.add_argument("--out", type=Path, default=None, help="raw results JSON (default: a file in /tmp)")
    args = p.parse_args(argv)
    args.variants = {}
    for item in args.variant:
        name, sep, rest = item.partition("=")
        if not sep or not name:
            p.error(f"--variant {item!r}: expected NAME=ARGS")
        args.variants[name] = shlex.split(rest)
    args.trees = {}
    for item in args.tree:
        name, sep, path = item.partition("=")
        if not sep or name not in args.variants or not is_checkout(Path(path)):
            p.error(f"--tree {item!r}: expected NAME=PATH, a --variant NAME and a checkout at PATH")
        args.trees[name] = Path(path)
    return args


def one_run(
    lab: Lab,
    server: str,
    queries: str,
    args: argparse.Namespace,
    pid: int | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Warm-up, a fixed-rate run (latency), a saturation run (QPS). With the serving process's `pid`,
    also its CPU time per query at saturation: less noisy than QPS when it is the bottleneck, and the
    number a code change moves. With `stats` (the agent's cumulative histograms, as bench.run reads
    them), also how long answers were held for their writes at the fixed rate."""
    dnsperf.run(lab, POD, server, queries, seconds=2, clients=args.clients, max_qps=1000)
    held = [stats()] if stats else []
    start = services.cpu_seconds(pid) if pid is not None else (0.0, 0.0)
    fixed = dnsperf.run(
        lab, POD, server, queries, seconds=args.latency_seconds, clients=args.clients,
        max_qps=args.rate, verbose=True,
    )  # fmt: skip
    before = services.cpu_seconds(pid) if pid is not None else (0.0, 0.0)
    if stats:
        held.append(stats())
    # At a fixed rate the process sleeps between queries and other processes use the caches, so this
    # is the cost of a query on a cold cache (most of them first answers), unlike saturation.
    fixed_cpu = services.cpu_us_per_query(start, before, fixed.completed) if pid is not None else None
    sat = dnsperf.run(
        lab, POD, server, queries, seconds=args.seconds, clients=args.clients, outstanding=args.outstanding
    )
    # The system part is the socket calls and the kernel's path for each datagram (the ruleset,
    # conntrack, the veth); the user part is the Python.
    sat_cpu = (
        services.cpu_us_per_query(before, services.cpu_seconds(pid), sat.completed)
        if pid is not None
        else None
    )
    fixed_user_per_query = round(fixed_cpu[0], 2) if fixed_cpu else None
    user_per_query = round(sat_cpu[0], 2) if sat_cpu else None
    per_query = round(sum(sat_cpu), 2) if sat_cpu else None
    lat = fixed.summary()
    return {
        "qps": sat.qps,
        "cpu_us_per_query": per_query,
        "user_cpu_us_per_query": user_per_query,
        "fixed_user_cpu_us_per_query": fixed_user_per_query,
        "lost": sat.lost,
        "p50_ms": lat.get("p50_ms"),
        "p99_ms": lat.get("p99_ms"),
        "fixed_lost": fixed.lost,
        "fixed_hold": report.hold_delta(held[0]["hold_time"], held[1]["hold_time"]) if held else None,
    }


COUNTERS = (
    "fqdn_policy_dns_queries_total",
    "fqdn_policy_dns_remembered_decisions_total",
    "fqdn_policy_upstream_answers_reused_total",
    "fqdn_policy_set_elements_written_total",
)


def agent_counters(lab: Lab) -> dict[str, float]:
    """A few of the agent's counters after its runs (summed over labels): what the path did."""
    host, port = DEFAULT_METRICS
    code = f"import urllib.request; print(urllib.request.urlopen('http://{host}:{port}/metrics').read().decode())"
    text = lab.run("node", [sys.executable, "-c", code], timeout=30).stdout
    out: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in COUNTERS:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


@dataclass(frozen=True)
class UpstreamLab:
    lab: Lab
    work: Path
    files: dict[str, Path]
    allowed: list[str]
    queries: str
    upstream: subprocess.Popen[Any]


@contextlib.contextmanager
def upstream_lab(prefix: str) -> Iterator[UpstreamLab]:
    """The benchmark's workload (no fill), a lab with its one querying pod, and the upstream answering
    it: where bench.ab and bench.relayfloor measure. Everything is removed on the way out."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)  # dnsmasq drops to nobody and still reads its hosts file
    try:
        manifest = workload.generate(work, workload.WorkloadSpec(target_elements=0))
        files = {k: work / v for k, v in manifest.files.items()}
        allowed = sorted(files["allowed"].read_text().split())
        with Lab(pods=[PodSpec(POD, manifest.pod_ipv4, manifest.pod_ipv6)]) as lab:
            upstream = services.start_upstream(lab, work, files["hosts"], 300)
            services.wait_answering(lab, POD, services.UPSTREAM_IP, allowed[0], "AAAA")
            yield UpstreamLab(lab, work, files, allowed, str(files["queries"]), upstream)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def round_order(variants: dict[str, list[str]], round_number: int) -> list[tuple[str, list[str]]]:
    """The variants in round `round_number`'s order: rotated each round, because whichever runs later
    in a round was measured losing about 4 % of its QPS (the lab warms, the machine's other load drifts),
    which a fixed order turns into a bias between variants."""
    items = list(variants.items())
    shift = round_number % len(items) if items else 0
    return items[shift:] + items[:shift]


def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    with upstream_lab("fqdn-ab-") as env:
        lab, work, files, allowed, queries = env.lab, env.work, env.files, env.allowed, env.queries
        for r in range(args.rounds):
            result: dict[str, Any] = {"upstream": one_run(lab, services.UPSTREAM_IP, queries, args)}
            log(f"round {r + 1}: upstream {result['upstream']['qps']:,.0f} qps")
            for name, extra in round_order(args.variants, r):
                tree = args.trees.get(name)
                proc, log_path = services.start_agent(
                    lab, work, files["policy"], args.min_ttl, extra, label=f"agent-{name}", tree=tree
                )
                try:
                    follower = services.LogFollower(log_path)
                    follower.wait_for(["agent.ready"], timeout=120)
                    services.wait_answering(lab, POD, services.NODE_IP, allowed[0], "AAAA")
                    result[name] = one_run(
                        lab, services.NODE_IP, queries, args, proc.pid,
                        lambda: services.agent_stats(proc, follower),  # noqa: B023 - called in this iteration
                    )  # fmt: skip
                    result[name]["counters"] = agent_counters(lab)
                finally:
                    services.stop(proc, grace=10)
                    # A stopped agent leaves its tables (restarts are hitless): they would drop the
                    # next round's direct queries to the upstream.
                    lab.run("node", [*services.agent_command(tree), "teardown"], timeout=30)
                done = result[name]
                log(
                    f"round {r + 1}: {name} {done['qps']:,.0f} qps, {done['cpu_us_per_query']} us CPU "
                    f"per query ({done['user_cpu_us_per_query']} user), counters {done.get('counters')}"
                )
            rounds.append(result)
        upstream_alive = env.upstream.poll() is None
    return {"variants": {k: shlex.join(v) for k, v in args.variants.items()}, "rounds": rounds,
            "trees": {k: str(v) for k, v in args.trees.items()},
            "upstream_alive_at_end": upstream_alive}  # fmt: skip


COLD = "fixed_user_cpu_us_per_query"


def summary(results: dict[str, Any]) -> str:
    rounds = results["rounds"]
    lines = [
        "| variant | args | QPS (median) | QPS / upstream (median, per round) "
        "| agent CPU per query, us (median; of which user) | added p50 / p99 at fixed rate, ms "
        "| user CPU per query at fixed rate, us (median) | hold p50 / p99 at fixed rate, ms (median) |",
        "|---|---|---:|---|---:|---|---:|---|",
    ]
    for name, argv in results["variants"].items():
        ratios = [r[name]["qps"] / r["upstream"]["qps"] for r in rounds if r["upstream"]["qps"]]
        added50 = _added(rounds, name, "p50_ms")
        added99 = _added(rounds, name, "p99_ms")
        qps = statistics.median(r[name]["qps"] for r in rounds)
        cpu = _median([r[name]["cpu_us_per_query"] for r in rounds if r[name].get("cpu_us_per_query")])
        user = _median(
            [r[name]["user_cpu_us_per_query"] for r in rounds if r[name].get("user_cpu_us_per_query")]
        )
        lines.append(
            f"| {name} | `{argv}` | {qps:,.0f} | {statistics.median(ratios):.3f} "
            f"({', '.join(f'{x:.3f}' for x in ratios)}) | "
            f"{cpu}; {user} | "
            f"{_median(added50)} / {_median(added99)} | "
            f"{_median([r[name][COLD] for r in rounds if r[name].get(COLD)])} | "
            f"{_median(_held(rounds, name, 'p50_ms'))} / {_median(_held(rounds, name, 'p99_ms'))} |"
        )
    return "\n".join(lines)


def _added(rounds: list[dict[str, Any]], name: str, key: str) -> list[float]:
    """Latency added over the round's upstream (rounds where dnsperf reported none are skipped)."""
    return [r[name][key] - r["upstream"][key] for r in rounds if r[name][key] and r["upstream"][key]]


def _held(rounds: list[dict[str, Any]], name: str, key: str) -> list[float]:
    """The hold-time quantile (a bucket's upper bound) per round, where the agent held any answer."""
    return [r[name]["fixed_hold"][key] for r in rounds if (r[name].get("fixed_hold") or {}).get(key)]


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "-"


def log(message: str) -> None:
    print(f"[ab {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    out = args.out or Path(tempfile.gettempdir()) / f"fqdn-ab-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"results in {out}")
    print(summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
