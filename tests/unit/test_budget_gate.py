"""Entry budgets and the per-pod line rate through the gate: what is counted, logged, written and
forgotten when a pod floods unique names. Time passed in, the kernel a stub."""

import io

import orjson
import structlog
from dnslib import DNSRecord

from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.dnsproxy.wire import Answer, Query, parse_query
from fqdn_policy.ops.decisionlog import DecisionLog, LogMode
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.budget import EntryBudget
from fqdn_policy.policy.state.budgetreport import BudgetReport
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text
from tests.unit.test_budget import POLICY

A_IP, B_IP = "10.244.1.10", "10.244.1.11"


class Writer:
    """Acknowledges at once; requests whose deletes `refuse` accepts fail."""

    def __init__(self, refuse=lambda deletes: False):
        self.requests = []
        self.refuse = refuse

    def submit_elements(self, table, writes, deletes, done):
        writes, deletes = list(writes), list(deletes)
        self.requests.append(([w.element for w in writes], deletes))
        done(RuntimeError("No such file or directory") if deletes and self.refuse(deletes) else None)


def make_gate(now, per_pod=3, total=1000, writer=None, stream=None, rate=0.0):
    return PolicyGate(
        PolicyIndex(load_text(POLICY)),
        AllowTable(TTLPolicy(5, 86400, refresh_slack=0.1), budget=EntryBudget(per_pod, total)),
        AddressGuard(),
        writer or Writer(),
        "t",
        clock=lambda: now[0],
        decision_log=DecisionLog(stream or io.StringIO(), LogMode.CHANGES, rate=rate),
    )


def ask(gate, client, name, address, ttl=86400, repeatable=False):
    parsed = parse_query(DNSRecord.question(name).pack())
    q = Query(parsed.id, parsed.flags, parsed.question, name, parsed.qtype)
    released = []
    addresses = (address,) if isinstance(address, str) else address
    a = Answer(
        rcode=0, truncated=False, addresses=tuple((4, x, ttl) for x in addresses), repeatable=repeatable
    )
    gate.admit(client, "udp", q, a, released.append)
    return released, q, a


def served_remembered(gate, client, q, a):
    """Admit `a` again; whether the core's fast path took it (a remembered decision, nothing decided)."""
    before, released = gate.stats.remembered, []
    gate.admit(client, "udp", q, a, released.append)
    assert released == [True]
    return gate.stats.remembered == before + 1


def test_a_flood_is_evicted_counted_and_logged_once_per_interval():
    now = [0.0]
    gate = make_gate(now, per_pod=3)
    with structlog.testing.capture_logs() as logs:
        for i in range(20):
            now[0] = float(i)
            released, _, _ = ask(gate, A_IP, f"n{i}.flood.example", f"198.51.100.{i}")
            assert released == [True]  # every answer reaches the pod
        budget_lines = [e for e in logs if e["event"] == "dns.budget_exceeded"]
        # The first eviction (the 4th name, at t=3) at once; the next ten seconds' counted, not logged.
        assert len(budget_lines) == 2
        assert budget_lines[0]["pod"] == "default/a" and budget_lines[0]["evicted"] == {"pod": 1}
        assert budget_lines[1]["evicted"] == {"pod": 10}  # t=4..13, logged by the eviction at t=13
        # Held right after the eviction; the answer's own entry is being written.
        assert budget_lines[1]["entries"] == 2 and budget_lines[1]["max_entries_per_pod"] == 3
        gate.report_budget(30.0)  # the flush task: what waited its interval goes out
        budget_lines = [e for e in logs if e["event"] == "dns.budget_exceeded"]
    assert len(budget_lines) == 3 and budget_lines[2]["evicted"] == {"pod": 6}
    assert budget_lines[2]["evicted_total"] == {"pod": 17}
    assert gate.budget_report.evictions == {("default/a", "pod"): 17}
    assert gate.table.resolutions.entries_of("default/a") == 3


def test_evicted_elements_go_in_a_request_of_their_own_before_the_answers_write():
    now = [0.0]
    writer = Writer()
    gate = make_gate(now, per_pod=1, writer=writer)
    ask(gate, A_IP, "one.flood.example", "198.51.100.1")
    writer.requests.clear()
    ask(gate, A_IP, "two.flood.example", "198.51.100.2")
    assert writer.requests == [
        ([], [(A_IP, "198.51.100.1", "tcp", 443)]),
        ([(A_IP, "198.51.100.2", "tcp", 443)], []),
    ]


def test_a_refused_eviction_delete_does_not_fail_the_answer():
    now = [0.0]
    gate = make_gate(now, per_pod=1, writer=Writer(refuse=lambda deletes: True))
    ask(gate, A_IP, "one.flood.example", "198.51.100.1")
    with structlog.testing.capture_logs() as logs:
        released, _, _ = ask(gate, A_IP, "two.flood.example", "198.51.100.2")
    assert released == [True] and gate.stats.write_failures == 0
    assert gate.stats.evict_delete_failures == 1
    assert [e["event"] for e in logs if e["event"] == "dns.budget_delete_failed"] == [
        "dns.budget_delete_failed"
    ]
    assert (A_IP, "198.51.100.2", "tcp", 443) in gate.table.expiry


def test_a_remembered_decision_of_an_evicted_entry_is_decided_again():
    now = [0.0]
    writer = Writer()
    gate = make_gate(now, per_pod=1, writer=writer)
    _, q, a = ask(gate, A_IP, "one.flood.example", "198.51.100.1", repeatable=True)
    assert served_remembered(gate, A_IP, q, a) is True  # remembered: covered, and its log key open
    now[0] = 1.0
    ask(gate, A_IP, "two.flood.example", "198.51.100.2")  # evicts one.flood.example
    now[0] = 2.0
    writer.requests.clear()
    # The same answer object again: without the eviction this is a remembered, covered repeat.
    assert served_remembered(gate, A_IP, q, a) is False
    assert ([(A_IP, "198.51.100.1", "tcp", 443)], []) in writer.requests  # allowed again: written
    assert gate.table.resolutions.entries_of("default/a") == 1


def test_another_pods_remembered_decisions_survive_an_eviction():
    now = [0.0]
    gate = make_gate(now, per_pod=1)
    _, q, a = ask(gate, B_IP, "b.quiet.example", "203.0.113.1", repeatable=True)
    now[0] = 1.0
    assert served_remembered(gate, B_IP, q, a) is True
    ask(gate, A_IP, "one.flood.example", "198.51.100.1")
    ask(gate, A_IP, "two.flood.example", "198.51.100.2")  # evicts one of A's
    now[0] = 2.0
    assert served_remembered(gate, B_IP, q, a) is True


def test_decision_lines_of_a_flooding_pod_are_folded_and_counted_per_pod():
    now = [0.0]
    stream = io.StringIO()
    gate = make_gate(now, per_pod=10_000, stream=stream, rate=5.0)
    for i in range(150):
        now[0] = i * 0.01  # 150 names in 1.5 s
        ask(gate, A_IP, f"n{i}.flood.example", f"198.51.100.{i}")
    ask(gate, B_IP, "b.quiet.example", "203.0.113.1")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    by_pod = {}
    for line in lines:
        by_pod[line["pod"]] = by_pod.get(line["pod"], 0) + 1
    assert by_pod == {"default/a": 17, "default/b": 1}  # a burst of 10, then 5 a second
    assert gate.decision_log.folded == {"default/a": 133}
    gate.decision_log.report_folded(now[0], force=True)
    folded = [orjson.loads(line) for line in stream.getvalue().splitlines()][-1]
    assert folded["event"] == "dns.decisions_folded"
    assert (folded["pod"], folded["folded"], folded["folded_total"]) == ("default/a", 133, 133)


def test_budget_lines_of_a_quiet_spell_start_again_at_once():
    report = BudgetReport(line_seconds=10.0)
    assert report.record("p", "pod", 1, 0.0) is True
    assert report.line("p", 0.0) == {"pod": "p", "evicted": {"pod": 1}, "evicted_total": {"pod": 1}}
    assert report.record("p", "agent", 2, 5.0) is False
    assert report.due(9.0) == []
    assert report.due(10.0) == [
        {"pod": "p", "evicted": {"agent": 2}, "evicted_total": {"pod": 1, "agent": 2}}
    ]
    assert report.due(30.0) == []  # nothing pending; the pod's interval is forgotten
    assert report.record("p", "pod", 1, 31.0) is True


class HoldingWriter(Writer):
    """Acknowledges deletes at once; holds writes until `complete`."""

    def __init__(self):
        super().__init__()
        self.held = []

    def submit_elements(self, table, writes, deletes, done):
        writes = list(writes)
        if writes:
            self.held.append(done)
        else:
            super().submit_elements(table, writes, deletes, done)


def test_an_answer_written_while_its_pod_was_evicted_is_not_remembered():
    now = [0.0]
    writer = HoldingWriter()
    gate = make_gate(now, per_pod=2, writer=writer)
    for i, name in enumerate(("zero.flood.example", "zed.flood.example")):
        ask(gate, A_IP, name, f"198.51.100.{i}")
        writer.held.pop()(None)
    _, q, a = ask(gate, A_IP, "one.flood.example", "198.51.100.2", repeatable=True)  # evicts zero
    # While one.flood.example's write is out, an answer with two addresses evicts zed.flood.example.
    ask(gate, A_IP, "two.flood.example", ("198.51.100.3", "198.51.100.4"))
    assert gate.budget_report.evictions == {("default/a", "pod"): 2}
    writer.held.pop(0)(None)  # one.flood.example's write is acknowledged
    assert served_remembered(gate, A_IP, q, a) is False  # decided again, not taken on trust
