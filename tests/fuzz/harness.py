"""One fuzz target for the query path and the answer path, shared by the short run in the default suite
(tests/unit/test_fuzz.py) and the million-input run (`python -m bench.fuzz`).

An input is a (query, answer) pair of byte strings. The query goes through the real Resolver's UDP path
(parse, rate limit, forward); a fake upstream answers it in-process with the answer bytes under the query's
ID (so the answer is read as if it came from the right socket); the real parse_answer judges it, and the
real PolicyGate decides, plans kernel writes and logs, with a writer that acknowledges at once after
checking every element change encodes as a netlink batch and names addresses the answer carried.

What counts as a finding: any exception escaping, more than one reply to a query, a reply with another
ID, or a kernel write naming an address that was not in the answer.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import Callable, Iterable

from dnslib import AAAA, CNAME, QTYPE, RR, A, DNSRecord

from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.dnsproxy.parsememo import AnswerMemo, QueryMemo
from fqdn_policy.dnsproxy.ratelimit import ClientRateLimiter
from fqdn_policy.dnsproxy.server import Resolver
from fqdn_policy.dnsproxy.wire import Answer, Query, WireError, parse_query, with_id
from fqdn_policy.enforcer.elementwire import ElementChange, encode_batch
from fqdn_policy.ops.decisionlog import DecisionLog, LogMode
from fqdn_policy.policy.decide.decisioncache import DecisionCache
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.elements import Element, ElementWrite
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

# Exact names only: whatever the fuzzer invents, the allow table stays bounded by names x pods x the
# per-name cap, so memory growth means a leak, not a bigger policy.
POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: fuzz, namespace: default}
spec:
  podSelector: {matchLabels: {app: c}}
  egress:
  - matches: [{name: www.example.com}, {name: api.example.com}]
---
{apiVersion: v1, kind: Pod, metadata: {name: c, namespace: default, labels: {app: c}},
 status: {podIPs: [{ip: 10.244.1.10}, {ip: "2001:db8:244::10"}]}}
"""
CLIENTS = (("10.244.1.10", 40000), ("2001:db8:244::10", 40001), ("10.244.1.99", 40002))
# The parse memos and the decision cache hold up to their capacity by design; a small one here makes
# the fuzzer go through their clearing often, and keeps the growth check about leaks, not about them.
MEMO_CAPACITY = 64


class FuzzFinding(AssertionError):
    pass


class _FakeForwarder:
    """Answers at once with the bytes the fuzzer chose, as the real Forwarder's socket path would."""

    def __init__(self) -> None:
        self.answer = b""
        self.answers = AnswerMemo(MEMO_CAPACITY)  # as the real one reads answers

    def forward(
        self, query: Query, wire: bytes, callback: Callable[[bytes | None, Answer | None], None]
    ) -> None:
        data = with_id(self.answer, query.id) if len(self.answer) >= 2 else self.answer
        try:
            parsed = self.answers.parse(data, query.question)
        except WireError:
            callback(None, None)  # the real one keeps waiting, then times out: SERVFAIL either way
            return
        callback(data, parsed)


class _CheckingWriter:
    """Acknowledges every write at once; checks the element changes before (they must encode)."""

    def __init__(self) -> None:
        self.answer = b""
        self.writes = 0

    def submit_elements(
        self,
        table: str,
        writes: Iterable[ElementWrite],
        deletes: Iterable[Element],
        done: Callable[[Exception | None], None],
    ) -> None:
        change = ElementChange(table, tuple(writes), tuple(deletes))
        encode_batch([change], 1)
        for write in change.writes:
            dst = write.element[1]
            if not _in_answer(dst, self.answer):
                raise FuzzFinding(f"write of {dst}, not in the answer {self.answer!r}")
        self.writes += 1
        done(None)


class FuzzTarget:
    def __init__(self) -> None:
        self.clock = 1000.0
        self.forwarder = _FakeForwarder()
        self.writer = _CheckingWriter()
        self.decision_log = DecisionLog(open(os.devnull, "w"), LogMode.ALL)  # noqa: SIM115 - lives as long as the target
        self.gate = PolicyGate(
            PolicyIndex(load_text(POLICY)),
            AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0)),
            AddressGuard(),
            self.writer,  # type: ignore[arg-type]
            "fuzz",
            clock=lambda: self.clock,
            decision_log=self.decision_log,
        )
        self.gate.covered = DecisionCache(MEMO_CAPACITY)
        self.resolver = asyncio.run(self._resolver())
        self.resolver.queries = QueryMemo(MEMO_CAPACITY)
        self.inputs = 0

    async def _resolver(self) -> Resolver:
        return Resolver(self.forwarder, self.gate, ClientRateLimiter(1e9, 2e9))  # type: ignore[arg-type]

    def run_one(self, query: bytes, answer: bytes) -> None:
        self.inputs += 1
        self.clock += 0.01
        self.forwarder.answer = answer
        self.writer.answer = answer
        client = CLIENTS[self.inputs % len(CLIENTS)]
        replies: list[bytes] = []
        self.resolver.handle_udp(query, client, lambda data, _addr: replies.append(data))
        if len(replies) > 1:
            raise FuzzFinding(f"{len(replies)} replies to one query")
        if replies and len(query) >= 2 and replies[0][:2] != query[:2]:
            raise FuzzFinding("reply under another ID")
        if self.inputs % 1000 == 0:  # what the agent's timers do: expire, flush repeats and the log
            self.gate.table.forget_expired(self.clock)
            self.decision_log.flush_repeats(self.clock)
            self.decision_log.flush()


def _in_answer(address: str, answer: bytes) -> bool:
    """The oracle for writes, independent of the parser: the address's bytes occur in the answer."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.inet_pton(family, address) in answer


def seeds() -> list[tuple[bytes, bytes]]:
    """Valid (query, answer) pairs: allowed and other names, A/AAAA/CNAME chains, errors, truncation."""
    out = []
    for name, qtype in (("www.example.com", "A"), ("api.example.com", "AAAA"), ("other.example.org", "A")):
        q = DNSRecord.question(name, qtype)
        r = q.reply()
        if qtype == "A":
            r.add_answer(RR(name, QTYPE.A, rdata=A("198.51.100.10"), ttl=300))
            r.add_answer(RR(name, QTYPE.A, rdata=A("198.51.100.11"), ttl=5))
        else:
            r.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA("2001:db8:100::10"), ttl=60))
        out.append((q.pack(), r.pack()))
    q = DNSRecord.question("www.example.com")
    r = q.reply()
    r.add_answer(RR("www.example.com", QTYPE.CNAME, rdata=CNAME("edge.cdn.example.net"), ttl=30))
    r.add_answer(RR("edge.cdn.example.net", QTYPE.A, rdata=A("203.0.113.7"), ttl=30))
    out.append((q.pack(), r.pack()))
    r = q.reply()
    r.header.rcode = 3
    out.append((q.pack(), r.pack()))
    r = q.reply()
    r.header.tc = 1
    r.add_answer(RR("www.example.com", QTYPE.A, rdata=A("198.51.100.12"), ttl=300))
    out.append((q.pack(), r.pack()[:-3]))
    return out


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """One to four random edits: bit flips, byte runs, truncation, insertion, splicing, oversizing."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice((0, 0xFF, 0xC0, 0x3F, 0x40, rng.randrange(256)))
        elif kind == 2:
            del buf[pos:]
        elif kind == 3:
            buf[pos:pos] = os.urandom(rng.randint(1, 16)) if rng.random() < 0.5 else b"\xc0\x0c" * 4
        elif kind == 4:
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif kind == 5 and len(buf) >= 12:
            struct.pack_into(
                "!H", buf, 2 * rng.randrange(2, 6), rng.choice((0, 1, 2, 0xFFFF, rng.randrange(65536)))
            )
        elif kind == 6:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == 7 and rng.random() < 0.05:
            buf += b"\x00" * rng.randint(1000, 70000)  # oversized: past any datagram
    return bytes(buf)


def mutation_run(
    count: int, seed: int, target: FuzzTarget | None = None, on_progress: Callable[[int], None] | None = None
) -> FuzzTarget:
    """`count` seeded mutations through one target; raises on the first finding."""
    rng = random.Random(seed)
    target = target or FuzzTarget()
    pairs = seeds()
    for i in range(count):
        q, a = rng.choice(pairs)
        oq, oa = rng.choice(pairs)
        roll = rng.random()
        query = mutate(rng, q, oq) if roll < 0.6 else q
        answer = mutate(rng, a, oa) if roll > 0.3 else a
        if query is not q and rng.random() < 0.5:
            answer = echo_question(query, q, answer)  # so a mutated question still reaches the gate
        target.run_one(query, answer)
        if on_progress is not None and (i + 1) % 50_000 == 0:
            on_progress(i + 1)
    return target


def echo_question(query: bytes, original: bytes, answer: bytes) -> bytes:
    """`answer` with its question replaced by `query`'s, when that one parses."""
    try:
        question = parse_query(query).question
    except WireError:
        return answer
    return answer[:12] + question + answer[len(original) :]
