"""Memory per live allowed entry: the agent's bookkeeping in process at 100,000 and 1,000,000 entries.

    .venv/bin/python -m bench.entrymem [--entries 100000 --entries 1000000] [--family 6] [--tracemalloc]

Each size runs in a fresh interpreter: the agent's objects set up as agent.runtime does (PolicyIndex,
AllowTable, PolicyGate, DecisionLog in its default mode and line rate, NameMemory; gc.freeze after
the start), then a flood as issue 17 measured it: unique names under `*.flood.example`, each answered
with its own address and TTL 86,400, parsed from wire bytes as the DNS server would and admitted by
the gate (the kernel a stub that acknowledges at once), spread over `--pods` pods. The budgets are set
above the size, so nothing is evicted. RSS is read before the flood and after it in the same process;
the difference over the live entries is the cost of one. `--tracemalloc` also counts the bytes Python
allocated, and where (slower).

Target (issue 17): at most 0.5 KB per entry. No root, no network.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_BYTES = 512


def policy_text(pods: int) -> str:
    docs = [
        """apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: flood}
spec:
  podSelector: {}
  egress:
  - matches: [{pattern: "*.flood.example"}]
    ports: [{protocol: TCP, port: 443}]"""
    ]
    for p in range(pods):
        docs.append(
            f"{{apiVersion: v1, kind: Pod, metadata: {{name: pod{p:03d}}}, status: {{podIPs: "
            f'[{{ip: 10.244.1.{10 + p}}}, {{ip: "2001:db8:244::{10 + p:x}"}}]}}}}'
        )
    return "\n---\n".join(docs) + "\n"


def destination(i: int, family: int) -> str:
    """Entry i's address: its own in 2001:db8::/32, or one of the 508 IPv4 documentation hosts."""
    if family == 6:
        return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:f000::")) + i))
    block = ("198.51.100", "203.0.113")[(i // 254) % 2]
    return f"{block}.{1 + i % 254}"


def measure(entries: int, pods: int, family: int, trace: bool, top: int) -> dict[str, Any]:
    """In this interpreter: the flood, then RSS (and traced bytes) per live entry."""
    from bench.micro import _ImmediateWriter, _NullStream
    from bench.scale import answer_wire, query_wire, rss_kb
    from fqdn_policy.agent.gate import PolicyGate
    from fqdn_policy.dnsproxy.wire import parse_answer, parse_query
    from fqdn_policy.ops.decisionlog import DecisionLog
    from fqdn_policy.policy.diagnose.dropattribution import NameMemory
    from fqdn_policy.policy.match.addressguard import AddressGuard
    from fqdn_policy.policy.match.ruleindex import PolicyIndex
    from fqdn_policy.policy.state.allowtable import AllowTable
    from fqdn_policy.policy.state.budget import EntryBudget
    from fqdn_policy.policy.state.ttl import DEFAULT_REFRESH_SLACK, TTLPolicy
    from fqdn_policy.sources.fileloader import load_text

    index = PolicyIndex(load_text(policy_text(pods)))
    table = AllowTable(TTLPolicy(60, 86400, DEFAULT_REFRESH_SLACK), budget=EntryBudget(entries, entries))
    clock = [1000.0]
    gate = PolicyGate(
        index, table, AddressGuard(), _ImmediateWriter(), "t",  # type: ignore[arg-type]
        clock=lambda: clock[0], decision_log=DecisionLog(stream=_NullStream()), names=NameMemory(),  # type: ignore[arg-type]
    )  # fmt: skip
    clients = [f"10.244.1.{10 + p}" if family == 4 else f"2001:db8:244::{10 + p:x}" for p in range(pods)]
    qtype = 28 if family == 6 else 1
    released: list[bool] = []
    gc.collect()
    gc.freeze()
    if trace:
        tracemalloc.start(1)
        before_trace = tracemalloc.take_snapshot()
    before = rss_kb()
    started = time.perf_counter()
    for i in range(entries):
        clock[0] += 0.0001  # 10,000 answers a second of the agent's clock: nothing expires
        name = f"n{i}.flood.example"
        wire = query_wire(i & 0xFFFF, name, qtype)
        query = parse_query(wire)
        answer = parse_answer(answer_wire(wire, qtype, destination(i, family), 86400), query.question)
        gate.admit(clients[i % pods], "udp", query, answer, released.append)
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_kb()
    live = table.resolutions.total
    # IPv4: the 508 addresses are shared, so a pod holds fewer elements than entries.
    assert live == entries and (family == 4 or len(table) == entries) and all(released), (live, len(table))
    out: dict[str, Any] = {
        "entries": live,
        "pods": pods,
        "family": family,
        "rss_before_mb": round(before / 1024, 1),
        "rss_after_mb": round(after / 1024, 1),
        "rss_bytes_per_entry": round((after - before) * 1024 / live),
        "elements": len(table),
        "fill_seconds": round(seconds, 1),
    }
    if trace:
        stats = tracemalloc.take_snapshot().compare_to(before_trace, "lineno")
        out["traced_bytes_per_entry"] = round(sum(s.size_diff for s in stats) / live)
        out["top_sites"] = [
            f"{s.size_diff / live:6.0f} B  {Path(s.traceback[0].filename).name}:{s.traceback[0].lineno}"
            for s in stats[:top]
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, action="append", help="sizes (default 100,000 and 1,000,000)")
    p.add_argument("--pods", type=int, default=10, help="pods the flood is spread over")
    p.add_argument("--family", type=int, choices=[4, 6], default=6, help="6: every entry its own address")
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = args.entries or [100_000, 1_000_000]
    if args.child:
        print(json.dumps(measure(sizes[0], args.pods, args.family, args.tracemalloc, args.top)))
        return 0
    rows = []
    for size in sizes:  # each in its own interpreter: one size's heap does not carry into the next
        argv_child = [sys.executable, "-m", "bench.entrymem", "--child", "--entries", str(size)]
        argv_child += ["--pods", str(args.pods), "--family", str(args.family), "--top", str(args.top)]
        if args.tracemalloc:
            argv_child.append("--tracemalloc")
        done = subprocess.run(argv_child, cwd=REPO, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout))
    print(f"IPv{args.family} flood over {args.pods} pods, target <= {TARGET_BYTES} B per entry")
    head = f"{'entries':>10} {'RSS before':>11} {'RSS after':>10} {'B/entry (RSS)':>14}"
    print(f"{head} {'traced':>7} {'fill s':>7}")
    for row in rows:
        traced = row.get("traced_bytes_per_entry", "")
        print(
            f"{row['entries']:>10,} {row['rss_before_mb']:>9} MB {row['rss_after_mb']:>7} MB "
            f"{row['rss_bytes_per_entry']:>14} {traced:>7} {row['fill_seconds']:>7}"
        )
        for site in row.get("top_sites", []):
            print(f"           {site}")
    return 0 if all(r["rss_bytes_per_entry"] <= TARGET_BYTES for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
