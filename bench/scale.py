"""Agent memory at N live set elements and policy reload time, in process, without a kernel.

    .venv/bin/python -m bench.scale [--elements 100000] [--top 15] [--tracemalloc]

Builds bench.run's workload (1,000 policies x 20 names, 100 pods), sets the agent's objects up as
agent.runtime does (file load, PolicyIndex, AllowTable, PolicyGate, NameMemory, DecisionLog; gc.freeze
after the start), then feeds the gate the benchmark's queries and the fill names, parsed from wire
bytes as the DNS server would, until about `--elements` elements are live. It reports the process's
RSS at each step and bytes per element, then times the reload steps: the file load, the PolicyIndex
build and the AllowTable reconcile: the unchanged file without and with the caches, then after
an edit of a policy that selects the querying pod (every element it holds is reconciled).

A tool to compare code changes quickly, not the benchmark: bench.run measures the real agent
(sockets, the kernel writes, libnftables) and is what docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import ipaddress
import pstats
import struct
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import workload
from bench.micro import _ImmediateWriter, _NullStream
from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.dnsproxy.wire import parse_answer, parse_query
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.reconcile import reconcile
from fqdn_policy.policy.state.ttl import DEFAULT_REFRESH_SLACK, TTLPolicy
from fqdn_policy.sources.documentcache import DocumentCache
from fqdn_policy.sources.fileloader import load_file

QTYPES = {"A": 1, "AAAA": 28}


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def query_wire(ident: int, name: str, qtype: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def answer_wire(query: bytes, qtype: int, address: str, ttl: int) -> bytes:
    rdata = ipaddress.ip_address(address).packed
    header = struct.pack("!HHHHHH", struct.unpack("!H", query[:2])[0], 0x8180, 1, 1, 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(rdata)) + rdata
    return header + query[12:] + record


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--elements", type=int, default=100_000)
    p.add_argument(
        "--tracemalloc", action="store_true", help="trace allocations (slow): top sites at the end"
    )
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--profile", action="store_true", help="cProfile the reconcile after the edit")
    args = p.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start(1)
    tmp = Path(tempfile.mkdtemp(prefix="fqdn-scale-"))
    manifest = workload.generate(tmp, workload.WorkloadSpec(target_elements=args.elements))
    files = {k: tmp / v for k, v in manifest.files.items()}
    hosts: dict[tuple[str, int], str] = {}
    for line in files["hosts"].read_text().splitlines():
        address, name = line.split()
        hosts[(name, 6 if ":" in address else 4)] = address
    lines = files["queries"].read_text().splitlines() + files["fill"].read_text().splitlines()
    print(f"rss before load: {rss_kb() / 1024:.1f} MB")

    documents = DocumentCache()
    policy_set, load_s = timed(lambda: load_file(files["policy"], documents))
    index = PolicyIndex(policy_set)
    table = AllowTable(TTLPolicy(600, 86400, DEFAULT_REFRESH_SLACK))
    names = NameMemory()
    log = DecisionLog(stream=_NullStream(), rate=0)  # type: ignore[arg-type]
    gate = PolicyGate(
        index,
        table,
        AddressGuard(),
        _ImmediateWriter(),
        "t",
        clock=time.monotonic,
        decision_log=log,
        names=names,
    )  # type: ignore[arg-type]
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)  # as fqdn_policy.agent.runtime does after its start
    print(f"rss after start: {rss_kb() / 1024:.1f} MB (file load {load_s:.3f} s)")
    if args.tracemalloc:
        start_snapshot = tracemalloc.take_snapshot()

    released: list[bool] = []
    client = manifest.pod_ipv4
    started = time.perf_counter()
    for ident, line in enumerate(lines):
        name, qtype_text = line.split()
        qtype = QTYPES[qtype_text]
        address = hosts.get((name, 6 if qtype == 28 else 4))
        if address is None:
            continue
        wire = query_wire(ident & 0xFFFF, name, qtype)
        query = parse_query(wire)
        answer = parse_answer(answer_wire(wire, qtype, address, 300), query.question)
        gate.admit(client, "udp", query, answer, released.append)
    fill_s = time.perf_counter() - started
    gc.collect()
    live = len(table)
    full = rss_kb()
    print(f"rss at {live:,} elements: {full / 1024:.1f} MB ({len(released):,} answers in {fill_s:.1f} s)")

    if args.tracemalloc:
        stats = tracemalloc.take_snapshot().compare_to(start_snapshot, "lineno")
        print(f"top {args.top} allocation sites since the start (bytes per element):")
        for stat in stats[: args.top]:
            frame = stat.traceback[0]
            where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
            print(f"  {stat.size_diff / 1024 / 1024:7.1f} MB {stat.size_diff / max(live, 1):7.0f} B  {where}")
        tracemalloc.stop()

    reload_steps(files["policy"], gate, table, DocumentCache(), "unchanged file, no caches")
    reload_steps(files["policy"], gate, table, documents, "unchanged file")
    workload.edit_policy(files["policy"], 0)
    profile = cProfile.Profile() if args.profile else None
    reload_steps(files["policy"], gate, table, documents, "a policy of the querying pod edited", profile)
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    print(f"rss after reloads: {rss_kb() / 1024:.1f} MB")
    return 0


def reload_steps(
    path: Path,
    gate: PolicyGate,
    table: AllowTable,
    documents: DocumentCache,
    label: str,
    profile: cProfile.Profile | None = None,
) -> None:
    """What FileSource and Agent.apply do, minus the kernel: load, index, reconcile, apply. An empty
    DocumentCache parses the whole file; `no caches` also builds the index without the previous one."""
    previous = gate.index if len(documents) else None
    started = time.perf_counter()
    policy_set, load_s = timed(lambda: load_file(path, documents))
    index, index_s = timed(lambda: PolicyIndex(policy_set, previous))
    previous, gate.index = gate.index, index
    if profile is not None:
        profile.enable()
    rec, reconcile_s = timed(lambda: reconcile(table, index, time.monotonic(), previous))
    if profile is not None:
        profile.disable()
    table.apply_reconciliation(rec)
    total = time.perf_counter() - started
    print(
        f"reload ({label}): {total:.3f} s = load {load_s:.3f} + index {index_s:.3f} + reconcile "
        f"{reconcile_s:.3f} ({len(rec.writes):,} writes, {len(rec.deletes):,} deletes)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
