"""Covered decisions remembered: a repeat skips `decide` only when `decide` would say the same, and the
gate does everything else (counts, resolutions, log lines, writes) exactly as without the cache."""

import io
import random

import orjson
import pytest
from dnslib import DNSRecord

import fqdn_policy.policy.decide.enforcement
from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.dnsproxy.wire import Answer
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.policy.decide.decisioncache import DecisionCache, Remembered
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text
from tests.unit.test_gate import POLICY, query

CLIENT = "10.244.1.10"
ELEMENT = (CLIENT, "198.51.100.10", "tcp", 443)
# A second policy text: the same pod also allows port 80 for www.google.com.
POLICY_80 = POLICY.replace("ports: [{protocol: TCP, port: 443}]", "ports: [{protocol: TCP, port: 443}, {protocol: TCP, port: 80}]")  # fmt: skip


class AckingWriter:
    def __init__(self, fail=lambda writes: False):
        self.writes = []
        self.fail = fail

    def submit_elements(self, table, writes, deletes, done):
        self.writes.append(([(w.element, w.timeout) for w in writes], list(deletes)))
        done(RuntimeError("netlink: no space") if self.fail(writes) else None)


def make_gate(now, cache=None, table=None, writer=None, log=None):
    gate = PolicyGate(
        PolicyIndex(load_text(POLICY)),
        table or AllowTable(TTLPolicy(5, 3600, refresh_slack=0.1)),
        AddressGuard(),
        writer or AckingWriter(),
        "t",
        clock=lambda: now[0],
        decision_log=log or DecisionLog(io.StringIO()),
    )
    if cache is not None:
        gate.covered = cache
    return gate


@pytest.fixture
def decided(monkeypatch):
    calls = []
    real = fqdn_policy.policy.decide.enforcement.decide

    def counting(*args):
        calls.append(args[0].qname)
        return real(*args)

    monkeypatch.setattr(fqdn_policy.policy.decide.enforcement, "decide", counting)
    return calls


def answer(address="198.51.100.10", ttl=300, repeatable=True):
    """One address, or several joined by '+'; by default an answer the parse memo keeps."""
    return Answer(0, False, tuple((4, a, ttl) for a in address.split("+")), repeatable)


def test_a_repeat_of_a_covered_answer_is_not_decided_again(decided):
    now = [100.0]
    gate = make_gate(now)
    same, released = answer(), []
    for _ in range(5):
        gate.admit(CLIENT, "udp", query(), same, released.append)
        now[0] += 1.0
    assert released == [True] * 5
    assert decided == ["www.google.com"]  # the write; once written, the answer is covered
    assert gate.stats.remembered == 4
    assert gate.stats.by_outcome()["allowed"] == 5
    # every answer still extends what the pod resolved: the last one, at 104 s, until 404 s
    assert gate.table.resolutions.until("default/c", "www.google.com", "198.51.100.10") == 404.0


def test_an_answer_the_memo_did_not_keep_is_not_remembered(decided):
    now = [100.0]
    gate = make_gate(now)
    fresh = answer(repeatable=False)  # one datagram's own parse: it will never come again
    for _ in range(3):
        gate.admit(CLIENT, "udp", query(), fresh, lambda ok: None)
    assert len(gate.covered) == 0 and len(decided) == 3


def test_an_equal_answer_from_another_parse_is_a_repeat_and_a_changed_one_is_not(decided):
    """What the decision read of the answer is its rcode and its addresses with their TTLs: an equal
    answer is the same decision, whichever parse it came from; one TTL less is not."""
    now = [100.0]
    gate = make_gate(now)
    for _ in range(3):
        gate.admit(CLIENT, "udp", query(), answer(), lambda ok: None)
    assert len(decided) == 1 and gate.stats.remembered == 2
    gate.admit(CLIENT, "udp", query(), answer(ttl=299), lambda ok: None)
    gate.admit(CLIENT, "udp", query(), answer()._replace(rcode=3), lambda ok: None)
    assert len(decided) == 3 and gate.stats.remembered == 2


@pytest.mark.parametrize("change", ["index", "guard", "removal", "time", "client"])
def test_whatever_the_decision_read_voids_it(decided, change):
    now = [100.0]
    gate = make_gate(now)
    same = answer()
    gate.admit(CLIENT, "udp", query(), same, lambda ok: None)
    gate.admit(CLIENT, "udp", query(), same, lambda ok: None)
    assert len(decided) == 1 and gate.stats.remembered == 1  # written, then covered
    client = CLIENT
    if change == "index":
        gate.index = PolicyIndex(load_text(POLICY_80))
    elif change == "guard":
        gate.guard = AddressGuard(["198.51.100.0/24"])  # now a protected range: nothing is written
    elif change == "removal":
        gate.table.removals += 1
    elif change == "time":
        now[0] = 100.0 + 30.0 + 0.001  # written for 330 s: covered until 400 - 300 = 130 s
    else:
        client = "10.244.1.11"
    gate.admit(client, "udp", query(), same, lambda ok: None)
    assert len(decided) == 2 and gate.stats.remembered == 1
    if change == "index":  # the new rules' port 80 is written at once
        assert gate.writer.writes[-1][0] == [((CLIENT, "198.51.100.10", "tcp", 80), 330)]
    if change == "time":  # past the slack, the repeat refreshes its element
        assert gate.writer.writes[-1][0] == [(ELEMENT, 330)]


def test_a_repeat_opening_a_new_log_window_gets_its_line():
    now = [100.0]
    stream = io.StringIO()
    gate = make_gate(now, log=DecisionLog(stream, window=10.0))
    same = answer()
    for _ in range(3):
        gate.admit(CLIENT, "udp", query(), same, lambda ok: None)  # a line, then two counted repeats
    now[0] += 11.0
    gate.admit(CLIENT, "udp", query(), same, lambda ok: None)  # covered, and the window closed
    gate.decision_log.write_closed()  # the closed window's counts (the agent writes them in slices)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["event"], x.get("count")) for x in lines] == [
        ("dns.decision", None),
        ("dns.decision", None),
        ("dns.repeated", 2),
    ]
    assert lines[1]["rules"] == ["default/p#egress[0] (www.google.com)"]
    assert lines[1]["elements_written"] == 0


def test_the_cache_is_bounded_and_zero_remembers_nothing():
    cache = DecisionCache(capacity=2)
    now = [100.0]
    gate = make_gate(now, cache=cache)
    for i in range(5):
        same = answer(f"198.51.100.{i}")
        gate.admit(CLIENT, "udp", query(f"n{i}.example.com"), same, lambda ok: None)
        assert len(cache) <= 2
    off = make_gate(now, cache=DecisionCache(capacity=0))
    same = answer()
    for _ in range(3):
        off.admit(CLIENT, "udp", query(), same, lambda ok: None)
    assert len(off.covered) == 0 and off.stats.remembered == 0


def _observable(gate, stream, released):
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    for line in lines:
        line.pop("ts")
    return {
        "released": released,
        "writes": gate.writer.writes,
        "expiry": dict(gate.table.expiry),
        "resolutions": sorted(gate.table.resolutions.items()),
        "lookups": dict(gate.stats.lookups),
        "denied names": {k: dict(v) for k, v in gate.names._names.items()},
        "lines": lines,
    }


ADDRESS_CHOICES = ("198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.10+198.51.100.13")


@pytest.mark.parametrize("seed", range(8))
def test_with_or_without_the_cache_everything_observable_is_the_same(seed):
    """Random answers (a few shared parses, equal copies, TTLs counting down, moved addresses), time
    passing past slack and expiry, policy swaps, failed writes, expiry sweeps and the per-name cap."""
    rng = random.Random(seed)
    names = ["www.google.com", "n1.example.com", "denied.example.org"]
    parses = {
        (name, addr, ttl): answer(addr, ttl)
        for name in names
        for addr in ADDRESS_CHOICES
        for ttl in (0, 30, 300)
    }
    texts = [POLICY, POLICY_80, POLICY.replace("name: www.google.com", "pattern: '*.example.com'")]
    now = [1000.0]
    runs = []
    for cache in (DecisionCache(), DecisionCache(capacity=0)):
        rng.seed(seed)
        now[0] = 1000.0
        stream, released = io.StringIO(), []
        writer = AckingWriter(fail=lambda writes: rng.random() < 0.05)
        table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.1), max_addresses_per_name=2)
        gate = make_gate(now, cache=cache, table=table, writer=writer, log=DecisionLog(stream, window=20.0))
        indexes = [PolicyIndex(load_text(t)) for t in texts]
        current = {name: (name, "198.51.100.10", 300) for name in names}
        for _ in range(600):
            step = rng.random()
            if step < 0.03:
                gate.index = rng.choice(indexes)
            elif step < 0.06:
                table.forget_expired(now[0])
            now[0] += rng.choice((0.0, 0.0, 0.5, 0.5, 3.0, 40.0))
            name = rng.choice(names)
            if rng.random() < 0.2:  # the upstream's answer for this name changes
                current[name] = (name, rng.choice(ADDRESS_CHOICES), rng.choice((0, 30, 300)))
            key = current[name]
            parsed = parses[key] if rng.random() < 0.9 else answer(key[1], key[2], repeatable=False)
            client = rng.choice((CLIENT, CLIENT, "10.244.1.11"))
            gate.admit(client, "udp", query(name), parsed, released.append)
        gate.decision_log.flush_repeats(now[0])  # the counted repeats are compared too
        runs.append((_observable(gate, stream, released), gate.stats.remembered))
    (cached, hits), (uncached, _) = runs
    assert hits > 10, hits  # the cache did take part
    assert cached["denied names"]  # denials were among them
    assert cached == uncached


def test_a_new_index_drops_the_remembered_decisions_at_once():
    now = [100.0]
    gate = make_gate(now)
    same = answer()
    for _ in range(2):
        gate.admit(CLIENT, "udp", query(), same, lambda ok: None)
    assert len(gate.covered) == 1
    gate.index = PolicyIndex(load_text(POLICY))  # the old index is not kept alive by the cache
    assert len(gate.covered) == 0


@pytest.mark.parametrize("field", ["rcode", "addresses", "generation", "removals", "now"])
def test_the_cache_on_its_own_returns_an_entry_only_when_everything_matches(field):
    cache = DecisionCache()
    addresses = ((4, "198.51.100.10", 300),)
    entry = Remembered(
        0, addresses, 50.0, 7, 3, ("allowed", 1, 0), "allowed", "default/c", "a.example",
        "198.51.100.10", 300, (), (),
    )  # fmt: skip
    cache.put("10.244.1.10", b"q", entry)
    asked = {"rcode": 0, "addresses": addresses, "generation": 7, "removals": 3, "now": 50.0}
    assert cache.get("10.244.1.10", b"q", *asked.values()) is entry
    assert (
        cache.get("10.244.1.10", b"q", *{**asked, "addresses": ((4, "198.51.100.10", 300),)}.values())
        is entry
    )
    assert cache.get("10.244.1.11", b"q", *asked.values()) is None
    assert cache.get("10.244.1.10", b"r", *asked.values()) is None
    changed = {
        "rcode": 3,
        "addresses": ((4, "198.51.100.10", 299),),
        "generation": 8,
        "removals": 4,
        "now": 50.001,
    }
    asked[field] = changed[field]
    assert cache.get("10.244.1.10", b"q", *asked.values()) is None


def test_the_server_releases_a_covered_repeat_at_once_and_decides_the_rest(decided):
    """Resolver -> gate: a covered repeat is sent back at once, not decided again and with no write; a
    first answer, and the repeat that opens a log window, are decided."""
    import asyncio

    from fqdn_policy.dnsproxy.server import Resolver

    now = [100.0]
    gate = make_gate(now, log=DecisionLog(io.StringIO(), window=10.0))
    same = answer()

    class AnsweringForwarder:
        def forward(self, query_, wire, callback):
            callback(b"answer-for-" + wire[:2], same)

    sent: list[bytes] = []

    async def ask(times: int) -> None:
        resolver = Resolver(AnsweringForwarder(), gate)  # type: ignore[arg-type]
        wire = DNSRecord.question("www.google.com").pack()
        for _ in range(times):
            resolver.handle_udp(wire, (CLIENT, 5353), lambda data, _addr: sent.append(data))

    asyncio.run(ask(5))
    assert len(sent) == 5 and all(s.startswith(b"answer-for-") for s in sent)
    assert decided == ["www.google.com"]  # the write; once written, the answer is covered
    assert gate.stats.remembered == 4 and len(gate.writer.writes) == 1
    now[0] += 11.0  # a new log window: its first repeat is decided again, for its line
    asyncio.run(ask(2))
    assert decided == ["www.google.com"] * 2 and gate.stats.remembered == 5


def test_a_repeated_denial_is_not_decided_again_and_still_names_its_addresses(decided):
    """A name no rule allows: its repeats skip the matcher, yet each one is counted, and each one
    renews what a later drop of those addresses will be explained with."""
    now = [100.0]
    gate = make_gate(now)
    same = answer("203.0.113.7")
    for _ in range(4):
        gate.admit(CLIENT, "udp", query("denied.example.org"), same, lambda ok: None)
        now[0] += 1.0
    assert decided == ["denied.example.org"]
    assert gate.stats.remembered == 3 and gate.stats.by_outcome()["name-not-allowed"] == 4
    assert gate.names.names_for("default/c", "203.0.113.7", now[0]) == {"denied.example.org": None}
    assert gate.names._names[("default/c", "203.0.113.7")]["denied.example.org"][0] == 103.0  # the last
    gate.index = PolicyIndex(load_text(POLICY.replace("www.google.com", "denied.example.org")))
    gate.admit(CLIENT, "udp", query("denied.example.org"), same, lambda ok: None)
    assert decided == ["denied.example.org"] * 2 and gate.writer.writes  # now allowed, and written


class DeferredWriter:
    """Acknowledges a write only when told, so something can happen while it is out."""

    def __init__(self):
        self.writes, self.pending = [], []

    def submit_elements(self, table, writes, deletes, done):
        self.writes.append(([(w.element, w.timeout) for w in writes], list(deletes)))
        self.pending.append(done)


@pytest.mark.parametrize("meanwhile", ["nothing", "failed", "index", "guard", "removal"])
def test_a_written_answer_is_remembered_only_if_nothing_changed_while_the_write_was_out(decided, meanwhile):
    now = [100.0]
    writer = DeferredWriter()
    gate = make_gate(now, writer=writer)
    same = answer()
    gate.admit(CLIENT, "udp", query(), same, lambda ok: None)
    if meanwhile == "index":
        gate.index = PolicyIndex(load_text(POLICY))  # an equal policy, but another index
    elif meanwhile == "guard":
        gate.guard = AddressGuard()
    elif meanwhile == "removal":
        gate.table.removals += 1
    writer.pending.pop()(RuntimeError("netlink: no space") if meanwhile == "failed" else None)
    now[0] += 1.0
    gate.admit(CLIENT, "udp", query(), same, lambda ok: None)
    if meanwhile == "nothing":
        assert decided == ["www.google.com"] and gate.stats.remembered == 1
    else:
        assert decided == ["www.google.com"] * 2 and gate.stats.remembered == 0
