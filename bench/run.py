"""One command that builds a network-namespace lab and benchmarks, on the same query file and the same
upstream: (1) the upstream dnsmasq directly, (2) dnsmasq --nftset with its cache off, (3) fqdn-policy
with enforcement and its default logging. See docs/benchmarks.md.

    sudo .venv/bin/python -m bench.run            # from the repository root; ~3-4 minutes

Writes bench/results/<UTC stamp>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dnsperf, report, services, workload
from tests.lab.addressing import PodSpec
from tests.lab.netlab import Lab

POD = "pod-a"
ALLOW_SETS = [f"allow_v{v}{s}" for v in (4, 6) for s in ("", "_proto", "_port")]
RESULTS = services.REPO / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each saturation run")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="length of each fixed-rate run")
    p.add_argument("--rate", type=int, default=2000, help="fixed rate (qps) for the latency runs")
    p.add_argument("--clients", type=int, default=10, help="dnsperf -c")
    p.add_argument("--outstanding", type=int, default=100, help="dnsperf -q for saturation runs")
    p.add_argument("--fill-limit", type=float, default=90.0, help="time bound (s) of the fill run")
    p.add_argument("--ttl", type=int, default=300, help="TTL the upstream answers with (--local-ttl)")
    p.add_argument("--min-ttl", type=int, default=600, help="agent --min-ttl: nothing expires during the run")
    d = workload.WorkloadSpec()
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--names", type=int, default=d.names)
    p.add_argument("--pods", type=int, default=d.pods)
    p.add_argument("--policies", type=int, default=d.policies)
    p.add_argument("--target-elements", type=int, default=d.target_elements)
    p.add_argument("--only", choices=["upstream", "dnsmasq_nftset", "fqdn_policy"], action="append")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/<stamp>.json)")
    p.add_argument(
        "--profile", action="store_true", help="sample the agent with py-spy during its saturation run"
    )
    p.add_argument(
        "--agent-args",
        type=shlex.split,
        default=[],
        help='further `fqdn-policy run` arguments, e.g. "--event-loop asyncio"',
    )
    p.add_argument("--keep-work", action="store_true", help="keep the work directory (logs, workload)")
    p.add_argument("--quick", action="store_true", help="smoke test: short runs, small workload")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = args.latency_seconds = 3.0
        args.names, args.policies, args.target_elements, args.fill_limit = 2000, 100, 5000, 30.0
    return args


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "?",
    )  # fmt: skip
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError:
            return "?"
        text = (out.stdout + out.stderr).strip().splitlines()
        return next((line for line in text if "ersion" in line or line.startswith("nftables")), "?")

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(services.REPO), *args], capture_output=True, text=True)
        return out.stdout.strip()

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dnsperf": version(["dnsperf", "-h"]).replace("Version ", ""),
        "dnsmasq": version(["dnsmasq", "--version"]).split("  ")[0],
        "nft": version(["nft", "--version"]),
        "commit": git("rev-parse", "--short", "HEAD"),
        "product_files_changed_since_commit": len(
            git("diff", "--name-only", "HEAD", "--", "policy", "dnsproxy", "enforcer", "agent").split()
        ),
    }


def measure(
    lab: Lab,
    server: str,
    pid: int,
    files: dict[str, Path],
    allowed: set[str],
    args: argparse.Namespace,
    profile: Path | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Warm-up, a fixed-rate run with per-query latencies, then a saturation run (optionally profiled).

    `stats` (the agent only) returns its cumulative hold-time histogram; it is read before and after
    each run so each run gets its own histogram (the difference)."""
    queries = str(files["queries"])
    dnsperf.run(lab, POD, server, queries, seconds=2, clients=args.clients, max_qps=1000)
    holds = [stats()] if stats else []
    fixed_cpu, fixed_t0, fixed_steal = services.cpu_seconds(pid), time.monotonic(), services.steal_seconds()
    fixed = dnsperf.run(
        lab, POD, server, queries, seconds=args.latency_seconds, clients=args.clients,
        max_qps=args.rate, verbose=True, marked=allowed,
    )  # fmt: skip
    fixed_after, fixed_seconds = services.cpu_seconds(pid), time.monotonic() - fixed_t0
    fixed_steal = services.steal_seconds() - fixed_steal
    if stats:
        holds.append(stats())
    spy = services.start_profile(pid, args.seconds - 1, profile) if profile else None
    before, t0 = services.cpu_seconds(pid), time.monotonic()
    sat = dnsperf.run(
        lab, POD, server, queries, seconds=args.seconds, clients=args.clients, outstanding=args.outstanding
    )
    after = services.cpu_seconds(pid)
    out = {
        "fixed_rate": fixed.summary(),
        "saturation": sat.summary(),
        "saturation_cpu_percent": (sum(after) - sum(before)) / (time.monotonic() - t0) * 100,
        "fixed_rate_cpu_percent": (sum(fixed_after) - sum(fixed_cpu)) / fixed_seconds * 100,
        "fixed_rate_steal_ms": fixed_steal * 1000,
        # Per answered query, split: the system part is the socket calls and the kernel's path for
        # each datagram (and any set writes), the user part the server's own code.
        "fixed_rate_cpu_us_per_query": _split(
            services.cpu_us_per_query(fixed_cpu, fixed_after, fixed.completed)
        ),
        "saturation_cpu_us_per_query": _split(services.cpu_us_per_query(before, after, sat.completed)),
    }
    if stats:
        holds.append(stats())
        out["hold_for_write"] = {
            "fixed_rate": report.hold_delta(holds[0]["hold_time"], holds[1]["hold_time"]),
            "saturation": report.hold_delta(holds[1]["hold_time"], holds[2]["hold_time"]),
        }
        out["nft_call_time"] = {
            "fixed_rate": report.hold_delta(holds[0]["nft_call_time"], holds[1]["nft_call_time"]),
            "saturation": report.hold_delta(holds[1]["nft_call_time"], holds[2]["nft_call_time"]),
        }
        out["gc_pauses"] = {
            "fixed_rate": report.pause_delta(holds[0]["gc_pauses"], holds[1]["gc_pauses"]),
            "saturation": report.pause_delta(holds[1]["gc_pauses"], holds[2]["gc_pauses"]),
        }
    if spy is not None and profile is not None:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            services.stop(spy)
        if profile.exists():
            out["profile"] = {"file": str(profile), **services.summarize_profile(profile)}
    return out


def _split(per_query: tuple[float, float] | None) -> dict[str, float | None]:
    if per_query is None:
        return {"user": None, "system": None}
    return {"user": round(per_query[0], 1), "system": round(per_query[1], 1)}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def agent_ts(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


def sighup_reload(proc: subprocess.Popen[Any], follower: services.LogFollower) -> float:
    follower.skip_to_end()
    sent = time.time()
    os.kill(proc.pid, signal.SIGHUP)
    while True:
        record = follower.wait_for(["policy.loaded", "policy.refused", "policy.apply_failed"], timeout=120)
        if record["event"] != "policy.loaded":
            raise RuntimeError(f"reload failed: {record}")
        if record.get("reason") == "SIGHUP":  # not the file poll's own reload of an edited file
            return agent_ts(record) - sent


def bench_upstream(lab: Lab, upstream_pid: int, files: dict[str, Path], allowed: set[str], args: Any) -> Any:
    log("(1) upstream dnsmasq, direct")
    return measure(lab, services.UPSTREAM_IP, upstream_pid, files, allowed, args)


def bench_dnsmasq(lab: Lab, work: Path, files: dict[str, Path], allowed: set[str], args: Any) -> Any:
    log("(2) dnsmasq --nftset, cache off")
    services.create_dnsmasq_sets(lab, args.min_ttl)
    domains = files["nftset_domains"].read_text().split()
    proc = services.start_dnsmasq_nftset(lab, work, domains)
    try:
        probe = sorted(allowed)[0]
        services.wait_answering(lab, POD, services.NODE_IP, probe, "AAAA")
        out = measure(lab, services.NODE_IP, proc.pid, files, allowed, args)
        counts = services.count_elements(lab, services.DNSMASQ_TABLE, ["s4", "s6"])
    finally:
        services.stop(proc)
        services.delete_dnsmasq_sets(lab)
    text = (work / "dnsmasq-nftset.log").read_text(errors="replace")
    out["elements"] = counts
    out["elements_total"] = sum(counts.values())
    out["log_errors"] = sum(1 for line in text.lower().splitlines() if "fail" in line or "error" in line)
    out["nftset_domains"] = len(domains)
    return out


def bench_agent(lab: Lab, work: Path, files: dict[str, Path], allowed: set[str], args: Any) -> Any:
    """Startup, reloads, latency and saturation, then a fill to ~target elements for RSS. A step that
    fails is recorded as `error` and the numbers gathered before it are kept."""
    log("(3) fqdn-policy: starting (loads the policy)")
    agent: dict[str, Any] = {}
    out: dict[str, Any] = {"agent": agent}
    started = time.time()
    proc, log_path = services.start_agent(lab, work, files["policy"], args.min_ttl, args.agent_args)
    follower = services.LogFollower(log_path)
    try:
        ready = follower.wait_for(["agent.ready"], timeout=240)
        agent["startup_s"] = agent_ts(ready) - started
        agent["ready"] = {k: ready.get(k) for k in ("policies", "pods", "enforced_pods")}
        if not services.is_agent(proc.pid):
            raise RuntimeError(f"pid {proc.pid} is not the agent; RSS would be wrong")
        agent["rss_idle_kb"] = services.proc_status(proc.pid)["VmRSS"]
        services.wait_answering(lab, POD, services.NODE_IP, sorted(allowed)[0], "AAAA")
        log("(3) fqdn-policy: reload with empty sets")
        agent["reload_empty_s"] = sighup_reload(proc, follower)
        log("(3) fqdn-policy: measuring")
        profile = RESULTS / f"{args.stamp}-agent-profile.txt" if args.profile else None
        stats = lambda: services.agent_stats(proc, follower)  # noqa: E731
        out |= measure(lab, services.NODE_IP, proc.pid, files, allowed, args, profile, stats)
        agent["rss_main_kb"] = services.proc_status(proc.pid)["VmRSS"]
        agent["elements_main"] = services.count_elements(lab, services.PROXY_TABLE, ALLOW_SETS)
        agent["elements_main_total"] = sum(agent["elements_main"].values())
        log(f"(3) fqdn-policy: filling to ~{args.target_elements:,} elements (at most {args.fill_limit:g} s)")
        fill = dnsperf.run(
            lab, POD, services.NODE_IP, str(files["fill"]), seconds=args.fill_limit,
            clients=args.clients, outstanding=args.outstanding, runs=1,
        )  # fmt: skip
        agent["fill_run"] = fill.summary()
        agent["hold_after_fill"] = stats()
        status = services.proc_status(proc.pid)
        agent["rss_full_kb"], agent["hwm_full_kb"] = status["VmRSS"], status["VmHWM"]
        agent["threads"] = status["Threads"]
        agent["elements_full"] = services.count_elements(lab, services.PROXY_TABLE, ALLOW_SETS)
        agent["elements_full_total"] = sum(agent["elements_full"].values())
        log("(3) fqdn-policy: reload at full sets")
        agent["reload_full_s"] = sighup_reload(proc, follower)
        agent["rss_after_reload_kb"] = services.proc_status(proc.pid)["VmRSS"]
        log("(3) fqdn-policy: reload after editing a policy that selects the querying pod")
        workload.edit_policy(files["policy"], 0)
        agent["reload_edited_s"] = sighup_reload(proc, follower)
        agent["rss_after_edit_kb"] = services.proc_status(proc.pid)["VmRSS"]
    except Exception as error:
        log(f"(3) fqdn-policy: step failed: {error!r}")
        out["error"] = repr(error)
    finally:
        agent["exit_code"] = services.stop(proc, grace=10)
    agent["log"] = services.summarize_agent_log(log_path)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fqdn-bench-{stamp}-"))
    os.chmod(work, 0o755)  # dnsmasq drops to nobody and still reads its hosts file
    spec = workload.WorkloadSpec(
        seed=args.seed, names=args.names, pods=args.pods, policies=args.policies,
        target_elements=args.target_elements,
    )  # fmt: skip
    log(f"workload -> {work}")
    manifest = workload.generate(work, spec)
    files = {k: work / v for k, v in manifest.files.items()}
    allowed = set(files["allowed"].read_text().split())
    only = set(args.only or ["upstream", "dnsmasq_nftset", "fqdn_policy"])
    results: dict[str, Any] = {
        "date_utc": stamp,
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "machine": machine(),
        "loadavg_start": os.getloadavg(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "workload": asdict(manifest),
        "targets": {},
    }
    began = time.monotonic()
    try:
        with Lab(pods=[PodSpec(POD, manifest.pod_ipv4, manifest.pod_ipv6)]) as lab:
            log(f"lab {lab.id} up; starting upstream dnsmasq in inet")
            upstream = services.start_upstream(lab, work, files["hosts"], args.ttl)
            services.wait_answering(lab, POD, services.UPSTREAM_IP, sorted(allowed)[0], "AAAA")
            steps = {
                "upstream": lambda: bench_upstream(lab, upstream.pid, files, allowed, args),
                "dnsmasq_nftset": lambda: bench_dnsmasq(lab, work, files, allowed, args),
                "fqdn_policy": lambda: bench_agent(lab, work, files, allowed, args),
            }
            for name, step in steps.items():
                if name not in only:
                    continue
                try:
                    results["targets"][name] = step()
                except Exception as error:  # one failed target must not lose the others' numbers
                    log(f"{name} failed: {error!r}")
                    results["targets"][name] = {"error": repr(error)}
            results["upstream_alive_at_end"] = upstream.poll() is None
    finally:
        results["duration_s"] = round(time.monotonic() - began, 1)
        results["loadavg_end"] = os.getloadavg()
        results["work_dir"] = str(work) if args.keep_work else None
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    results["derived"] = report.derive(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.run needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    results = run(args)
    out = args.out or RESULTS / f"{results['date_utc']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    print(f"## fqdn-policy benchmark, {results['date_utc']}\n")
    print(f"`{results['command']}` on {m['nproc']} x {m['cpu']}, Linux {m['kernel']},")
    print(f"dnsperf {m['dnsperf']}, {m['dnsmasq']}, commit {m['commit']}; {results['duration_s']} s;")
    print(f"results in {out}\n")
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
