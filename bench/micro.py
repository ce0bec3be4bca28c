"""In-process cost of the per-query Python path, without sockets or a kernel: where the microseconds go.

    .venv/bin/python -m bench.micro [--policies 1000] [--queries 20000] [--gap-us 500 --gap-us 2000]

Builds the benchmark's workload in memory (bench.workload: 1,000 policies x 20 names, 100 pods), a
query and an upstream answer per name (AAAA, distinct address, TTL 300), then times, per query:
parsing the query, parsing the answer, and the gate deciding and releasing an answer already covered
(the steady state: nothing to write), and encoding a new one's write: the netlink batch the agent
sends, and the libnftables JSON it replaced; then the whole path, with answers that repeat byte for
byte and with every answer's TTL new (nothing for the parse memos or the remembered decisions).
Not a substitute for bench.run (no syscalls, no contention); a tool to compare code changes quickly.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnslib import AAAA, QTYPE, RR, DNSRecord

from bench import workload
from fqdn_policy.agent.collector import CollectorRegime
from fqdn_policy.agent.config import GC_THRESHOLD
from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.dnsproxy.wire import parse_answer, parse_query
from fqdn_policy.enforcer.elementwire import ElementChange, encode_batch
from fqdn_policy.enforcer.ruleset import element_commands
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import DEFAULT_REFRESH_SLACK, TTLPolicy
from fqdn_policy.sources.fileloader import load_file


class _NullStream:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _ImmediateWriter:
    """Acknowledges every write at once: the gate's own cost without a kernel."""

    def __init__(self) -> None:
        self.requests = 0

    def submit_elements(
        self, table: str, writes: Any, deletes: Any, done: Callable[[Exception | None], None]
    ) -> None:
        self.requests += 1
        done(None)


def _per_call(label: str, fn: Callable[[], object], count: int, repeat: int = 1) -> float:
    """Best of `repeat` runs (pure steps only repeat): the machine is shared, the minimum is the cost."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.thread_time()
        fn()
        best = min(best, time.thread_time() - started)
    micros = best / count * 1e6
    print(f"{label:<48} {micros:8.2f} us")
    return micros


def load_workload(policies: int, names: int) -> tuple[PolicyIndex, list[str], str]:
    """The benchmark's workload in memory: its policy index, the names it queries, the querying pod."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = workload.WorkloadSpec(policies=policies, names=names, target_elements=0)
        manifest = workload.generate(Path(tmp), spec)
        index = PolicyIndex(load_file(Path(tmp) / manifest.files["policy"]))
        queried = [
            line.split()[0] for line in (Path(tmp) / manifest.files["queries"]).read_text().splitlines()
        ]
    return index, queried, manifest.pod_ipv4


def aaaa_wires(names: list[str], ttl: int) -> list[tuple[bytes, bytes]]:
    """A query and its upstream answer per name: AAAA, a distinct documentation address each."""
    base = int(ipaddress.IPv6Address("2001:db8:be00::"))
    out: list[tuple[bytes, bytes]] = []
    for i, name in enumerate(names):
        q = DNSRecord.question(name, "AAAA")
        a = q.reply()
        a.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(str(ipaddress.IPv6Address(base + i))), ttl=ttl))
        out.append((q.pack(), a.pack()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", type=int, default=1000)
    p.add_argument("--queries", type=int, default=20000)
    p.add_argument("--profile", action="store_true", help="cProfile the steady-state gate.admit pass")
    p.add_argument(
        "--gap-us",
        type=float,
        action="append",
        default=[],
        help="also time first answers with the process asleep this long between them (repeatable)",
    )
    args = p.parse_args(argv)
    index, names, client = load_workload(args.policies, args.queries)
    wires = aaaa_wires(names, 300)
    # As from a caching upstream counting TTLs down: every pass's answers differ from the last's.
    counting_down = [aaaa_wires(names, 300 - k) for k in range(1, 5)]
    queries = [parse_query(q) for q, _ in wires]
    answers = [parse_answer(a, query.question) for (_, a), query in zip(wires, queries, strict=True)]
    n = len(wires)
    # The agent's collector regime (agent.collector): the default regime would charge collections the
    # agent does not make. A whole collection it asks for is not run: the passes are short.
    CollectorRegime(GC_THRESHOLD, lambda collect: None).install()

    def parse_queries() -> None:
        for q, _ in wires:
            parse_query(q)

    def parse_answers() -> None:
        for (_, a), query in zip(wires, queries, strict=True):
            parse_answer(a, query.question)

    clock = [1000.0]
    writer = _ImmediateWriter()
    table = AllowTable(TTLPolicy(600, 86400, DEFAULT_REFRESH_SLACK))
    log = DecisionLog(stream=_NullStream(), rate=0)  # type: ignore[arg-type]
    gate = PolicyGate(index, table, AddressGuard(), writer, "t", clock=lambda: clock[0], decision_log=log)
    released: list[bool] = []
    release = released.append

    def admit_all() -> None:
        for query, answer in zip(queries, answers, strict=True):
            gate.admit(client, "udp", query, answer, release)

    print(f"{n:,} AAAA queries, {args.policies:,} policies; per query:")
    _per_call("parse_query", parse_queries, n, repeat=7)
    _per_call("parse_answer (one AAAA)", parse_answers, n, repeat=7)
    _per_call("gate.admit, first answer (writes, immediate ack)", admit_all, n)
    clock[0] += 5.0
    _per_call("gate.admit, second answer (covered, first log line)", admit_all, n)
    clock[0] += 5.0
    _per_call("gate.admit, repeated answer (covered, no write)", admit_all, n)
    if args.profile:
        import cProfile
        import pstats

        clock[0] += 5.0
        profiler = cProfile.Profile()
        profiler.runcall(admit_all)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    pairs = zip(queries, answers, strict=True)
    writes = [w for q, a in pairs if a.addresses for w in _plan(table, index, q, a)]
    _per_call(
        "encode_batch (the netlink write), one element each",
        lambda: [encode_batch([ElementChange("t", (w,))], 1) for w in writes],
        len(writes),
        repeat=3,
    )
    _per_call(
        "element_commands + json.dumps (libnftables' input), one element each",
        lambda: [json.dumps({"nftables": element_commands("t", [w])}) for w in writes],
        len(writes),
        repeat=3,
    )
    print(f"released {len(released):,}, write requests {writer.requests:,}, elements {len(table):,}")
    whole = _whole_path(index, client, [wires])
    _per_call("whole path without syscalls, covered answer", whole, n, repeat=3)
    fresh = _whole_path(index, client, counting_down)
    _per_call("the same, every answer's TTL new (nothing repeats)", fresh, n, repeat=3)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(whole)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    for gap in args.gap_us:
        _first_answers_with_gaps(index, client, queries, answers, gap)
    return 0


def _first_answers_with_gaps(
    index: PolicyIndex, client: str, queries: list[Any], answers: list[Any], gap_us: float, count: int = 3000
) -> float:
    """`gate.admit` for first answers with the process asleep `gap_us` between them, as at a fixed
    query rate: CPU time per call, the sleep excluded. The code and the data are the same as in the
    back-to-back pass above; only the idle time between calls differs, and with it what the caches
    (and, on a virtual machine, the host) have done to the process meanwhile."""
    table = AllowTable(TTLPolicy(600, 86400, DEFAULT_REFRESH_SLACK))
    log = DecisionLog(stream=_NullStream(), rate=0)  # type: ignore[arg-type]
    gate = PolicyGate(index, table, AddressGuard(), _ImmediateWriter(), "t", decision_log=log)  # type: ignore[arg-type]
    released: list[bool] = []
    total = 0.0
    for query, answer in list(zip(queries, answers, strict=True))[:count]:
        if gap_us:
            time.sleep(gap_us / 1e6)
        started = time.thread_time()
        gate.admit(client, "udp", query, answer, released.append)
        total += time.thread_time() - started
    micros = total / min(count, len(queries)) * 1e6
    print(f"{f'gate.admit, first answer, {gap_us:,.0f} us asleep between':<48} {micros:8.2f} us")
    return micros


def _whole_path(
    index: PolicyIndex, client: str, passes: list[list[tuple[bytes, bytes]]]
) -> Callable[[], None]:
    """Resolver.handle_udp -> Forwarder -> the upstream's datagram -> the gate -> the client's send,
    with the sockets replaced by list appends: everything the agent's Python does per query. Each
    call is one pass over the next of `passes` (in turn), after a first pass that did the writes."""
    import asyncio

    from fqdn_policy.dnsproxy.server import Resolver
    from fqdn_policy.dnsproxy.upstream import Forwarder, UpstreamConfig

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def build() -> tuple[Resolver, Forwarder]:
        forwarder = Forwarder(UpstreamConfig((("192.0.2.1", 53),)))
        await forwarder.start()
        forwarder.close()  # the sockets go; their bookkeeping stays and is driven by hand below
        table = AllowTable(TTLPolicy(600, 86400, DEFAULT_REFRESH_SLACK))
        gate = PolicyGate(index, table, AddressGuard(), _ImmediateWriter(), "t",
                          decision_log=DecisionLog(stream=_NullStream(), rate=0))  # type: ignore[arg-type]  # fmt: skip
        return Resolver(forwarder, gate), forwarder

    resolver, forwarder = loop.run_until_complete(build())
    sent_up: list[tuple[Any, bytes]] = []
    for group in forwarder._sockets:
        for sock in group:
            sock.endpoint.send = lambda data, sock=sock: sent_up.append((sock, data))  # type: ignore[method-assign]
    to_client: list[bytes] = []
    addr = (client, 40000)

    def send(data: bytes, _addr: tuple[str, int]) -> None:
        to_client.append(data)

    turn = [0]

    def one_pass() -> None:
        wires = passes[turn[0] % len(passes)]
        turn[0] += 1
        for query, answer in wires:
            resolver.handle_udp(query, addr, send)
            sock, upstream_query = sent_up.pop()
            forwarder._on_datagram(sock, upstream_query[:2] + answer[2:])
        to_client.clear()

    async def run_pass() -> None:
        one_pass()

    loop.run_until_complete(run_pass())  # the first pass writes; the measured ones are covered

    def measured() -> None:
        loop.run_until_complete(run_pass())

    return measured


def _plan(table: AllowTable, index: PolicyIndex, query: Any, answer: Any) -> list[Any]:
    client = index.client(workload.pod_ips(0)[0])
    if client is None or client.rules is None or query.qname is None:
        return []
    match = client.rules.match(query.qname)
    ips = {4: client.pod.ips_of_family(4), 6: client.pod.ips_of_family(6)}
    return table.plan(client.pod.key, ips, query.qname, match.grants, answer.addresses, 10_000.0).writes


if __name__ == "__main__":
    raise SystemExit(main())
