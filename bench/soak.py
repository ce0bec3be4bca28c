"""Soak: the agent under a steady ~70% of its saturated rate for ten minutes, memory and errors watched.

    sudo .venv/bin/python -m bench.soak                  # 20 s saturation, then 600 s at 70 % of it
    sudo .venv/bin/python -m bench.soak --seconds 90     # a short one (tests/e2e/test_soak.py)

In a namespace lab: dnsmasq upstream in `inet` with NAMES names (A and AAAA, TTL 30 s so elements keep
being refreshed and expiring), the agent on the node enforcing a wildcard policy over half of them, one
pod running dnsperf. First dnsperf without a rate limit for `--saturation-seconds` measures the
saturated rate here and now (the machine is shared; a constant would be wrong), then one dnsperf run at
`--fraction` of it for `--seconds`, while the agent's RSS is sampled every `--sample` seconds.

Pass: after `--warmup` seconds, RSS stays within 10% (max over min of the samples), dnsperf lost no
query and every answer is NOERROR, and the agent logged no SERVFAIL or enforcer error. Also recorded:
UDP receive-buffer drops per namespace (node: the agent's sockets; inet: the upstream; the pod: dnsperf)
and the load average, which say where lost queries died. Writes
bench/results/soak-<UTC stamp>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dnsperf, services
from tests.lab.addressing import PodSpec
from tests.lab.netlab import Lab

POD = PodSpec("pod-a", "10.244.1.10", "2001:db8:244::10")
NAMES = 400
RESULTS = services.REPO / "bench" / "results"
BAD_EVENTS = ("dns.servfail", "enforcer.repairing", "enforcer.repair_failed", "policy.apply_failed")


def write_workload(work: Path) -> dict[str, Path]:
    """Half the names are allowed (*.allowed.soak.example), half not; every name has an A and an AAAA."""
    hosts, queries = [], []
    for i in range(NAMES):
        zone = "allowed" if i % 2 == 0 else "other"
        name = f"h{i}.{zone}.soak.example"
        hosts.append(f"198.51.100.{100 + i % 150} {name}")
        hosts.append(f"2001:db8:100::{0x1000 + i:x} {name}")
        queries += [f"{name} A", f"{name} AAAA"]
    policy = f"""apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {{name: soak, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: soak}}}}
  egress:
  - matches: [{{pattern: "*.allowed.soak.example"}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: soak, namespace: default, labels: {{app: soak}}}}
status: {{podIPs: [{{ip: {POD.ipv4}}}, {{ip: "{POD.ipv6}"}}]}}
"""
    files = {"hosts": work / "hosts", "queries": work / "queries", "policy": work / "policy.yaml"}
    files["hosts"].write_text("\n".join(hosts) + "\n")
    files["queries"].write_text("\n".join(queries) + "\n")
    files["policy"].write_text(policy)
    return files


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            try:
                rss = services.proc_status(self.pid)["VmRSS"]
            except OSError:
                return
            self.samples.append((round(time.monotonic() - self.started_at, 1), rss))


def udp_drops(lab: Lab) -> dict[str, int]:
    """Datagrams each namespace's kernel dropped for a full receive buffer (/proc/net/snmp Udp
    RcvbufErrors): where lost queries died when the process behind the socket was starved of CPU."""
    out = {}
    for ns in ("node", "inet", POD.name):
        lines = [line.split() for line in lab.run(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
        udp = [fields for fields in lines if fields[0] == "Udp:"]
        out[ns] = int(dict(zip(udp[0][1:], udp[1][1:], strict=True))["RcvbufErrors"])
    return out


def verdict(
    samples: list[tuple[float, int]], warmup: float, perf: dict[str, Any], events: dict[str, int]
) -> dict[str, Any]:
    after = [rss for t, rss in samples if t >= warmup]
    spread = (max(after) - min(after)) / min(after) * 100 if after else None
    rcodes = perf.get("rcodes", {})
    bad = {e: events.get(e, 0) for e in BAD_EVENTS if events.get(e)}
    return {
        "rss_after_warmup_min_kb": min(after) if after else None,
        "rss_after_warmup_max_kb": max(after) if after else None,
        "rss_spread_percent": round(spread, 2) if spread is not None else None,
        "rss_flat": spread is not None and spread <= 10.0,
        "lost": perf.get("lost"),
        "not_noerror": sum(n for r, n in rcodes.items() if r != "NOERROR"),
        "agent_bad_events": bad,
        "passed": spread is not None and spread <= 10.0 and perf.get("lost") == 0
        and set(rcodes) <= {"NOERROR"} and not bad,
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix=f"fqdn-soak-{stamp}-"))
    os.chmod(work, 0o755)  # dnsmasq drops to nobody and still reads its hosts file
    files = write_workload(work)
    result: dict[str, Any] = {
        "date_utc": stamp,
        "command": " ".join(["python -m bench.soak", *sys.argv[1:]]),
        "loadavg_start": os.getloadavg(),
        "config": {k: v for k, v in vars(args).items()},
    }
    try:
        with Lab(pods=[POD]) as lab:
            upstream = services.start_upstream(lab, work, files["hosts"], ttl=30)
            services.wait_answering(lab, POD.name, services.UPSTREAM_IP, "h0.allowed.soak.example", "A")
            agent, log_path = services.start_agent(lab, work, files["policy"], min_ttl=5)
            services.LogFollower(log_path).wait_for(["agent.ready"], timeout=60)
            services.wait_answering(lab, POD.name, services.NODE_IP, "h0.allowed.soak.example", "A")
            queries = str(files["queries"])
            sat = dnsperf.run(
                lab,
                POD.name,
                services.NODE_IP,
                queries,
                seconds=args.saturation_seconds,
                clients=10,
                outstanding=100,
            )
            rate = max(1, int(sat.qps * args.fraction))
            result["saturation"] = sat.summary()
            result["soak_rate_qps"] = rate
            print(
                f"[soak] saturated at {sat.qps:.0f} qps; soaking at {rate} qps for {args.seconds:g} s",
                file=sys.stderr,
            )
            drops_before = udp_drops(lab)
            sampler = RssSampler(agent.pid, args.sample)
            sampler.start()
            soak = dnsperf.run(
                lab, POD.name, services.NODE_IP, queries, seconds=args.seconds, clients=10, max_qps=rate,
                grace_s=30,
            )  # fmt: skip
            sampler.stop_event.set()
            sampler.join(timeout=5)
            result["soak"] = soak.summary()
            after = udp_drops(lab)
            result["udp_rcvbuf_drops"] = {ns: after[ns] - drops_before[ns] for ns in after}
            result["rss_samples"] = sampler.samples
            result["agent_exit_code"] = services.stop(agent, grace=10)
            result["upstream_alive"] = upstream.poll() is None
            log = services.summarize_agent_log(log_path)
            result["agent_log"] = log
            result |= verdict(sampler.samples, args.warmup, result["soak"], log["events"])
    finally:
        result["loadavg_end"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=600.0, help="length of the soak")
    p.add_argument("--saturation-seconds", type=float, default=20.0)
    p.add_argument("--fraction", type=float, default=0.7, help="of the saturated rate")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds of RSS not judged")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.soak needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    result = run(args)
    out = args.out or RESULTS / f"soak-{result['date_utc']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=2, default=str))
    print(f"results in {out}")
    return 0 if result.get("passed") else 1


if __name__ == "__main__":
    raise SystemExit(main())
