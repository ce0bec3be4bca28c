"""The gate between DNS and kernel: an answer is released only after its write, SERVFAIL if it fails."""

import asyncio
import io

import orjson
import pytest
from dnslib import DNSRecord

from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.dnsproxy.wire import Answer, Query, parse_query
from fqdn_policy.ops.decisionlog import DecisionLog, LogMode
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: p}
spec:
  podSelector: {matchLabels: {app: c}}
  egress:
  - matches: [{name: www.google.com}]
    ports: [{protocol: TCP, port: 443}]
---
{apiVersion: v1, kind: Pod, metadata: {name: c, labels: {app: c}}, status: {podIPs: [{ip: 10.244.1.10}]}}
---
{apiVersion: v1, kind: Pod, metadata: {name: o}, status: {podIPs: [{ip: 10.244.1.11}]}}
"""


class HeldWriter:
    """Holds every write until the test completes it."""

    def __init__(self):
        self.pending = []

    def submit_elements(self, table, writes, deletes, done):
        assert table == "t"
        self.pending.append((list(writes), done))


@pytest.fixture
def gate():
    index = PolicyIndex(load_text(POLICY))
    return PolicyGate(
        index,
        AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0)),
        AddressGuard(),
        HeldWriter(),
        "t",
        clock=lambda: 100.0,
    )


def query(name="www.google.com"):
    parsed = parse_query(DNSRecord.question(name or "odd.example").pack())
    return Query(parsed.id, parsed.flags, parsed.question, name, parsed.qtype)


def answer(*addresses):
    return Answer(rcode=0, truncated=False, addresses=tuple((4, a, 300) for a in addresses))


def test_answer_waits_for_its_write(gate):
    released = []
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)
    assert released == []
    ((writes, done),) = gate.writer.pending
    assert [(w.element, w.timeout, w.name) for w in writes] == [
        (("10.244.1.10", "198.51.100.10", "tcp", 443), 300, "www.google.com")
    ]
    done(None)
    assert released == [True]
    assert len(gate.table) == 1


def test_failed_write_means_servfail_and_nothing_remembered(gate):
    released = []
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)
    gate.writer.pending[0][1](RuntimeError("netlink: no such table"))
    assert released == [False]
    assert len(gate.table) == 0
    assert gate.stats.write_failures == 1


def test_a_failed_write_asks_for_a_repair_with_its_error():
    # The agent rebuilds the table on this call (Agent._write_failed); without it a deleted table
    # would give SERVFAIL until the watchdog's next look.
    failures = []
    gate = PolicyGate(
        PolicyIndex(load_text(POLICY)), AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0)), AddressGuard(), HeldWriter(), "t",
        clock=lambda: 100.0, on_write_failure=failures.append,
    )  # fmt: skip
    released = []
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)
    gate.writer.pending.pop()[1](None)
    assert failures == []  # a write that worked asks for nothing
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.11"), released.append)
    error = RuntimeError("netlink: no such table")
    gate.writer.pending.pop()[1](error)
    assert failures == [error] and released == [True, False]
    assert gate.stats.write_failures == 1


def test_the_agent_repairs_once_per_failure_burst():
    async def main():
        from pathlib import Path

        from fqdn_policy.agent.config import AgentConfig
        from fqdn_policy.agent.runtime import Agent
        from fqdn_policy.dnsproxy.upstream import UpstreamAddress, UpstreamConfig
        from fqdn_policy.sources.filesource import FileSource

        agent = Agent(AgentConfig(UpstreamConfig((UpstreamAddress("192.0.2.53", 53),))),
                      FileSource(Path("unused.yaml")))  # fmt: skip
        reasons = []
        gate_open = asyncio.Event()

        async def repair(reason):
            reasons.append(reason)
            await gate_open.wait()

        agent.repair = repair
        for _ in range(3):  # a burst of failed writes while one repair runs: one repair
            agent._write_failed(RuntimeError("no such table"))
        await asyncio.sleep(0)
        assert reasons == ["write failed: no such table"]
        gate_open.set()
        await agent._repairing
        agent._write_failed(RuntimeError("again"))  # after it finished, a new failure repairs again
        await asyncio.sleep(0)
        assert reasons[-1] == "write failed: again" and len(reasons) == 2
        await agent._repairing

    asyncio.run(main())


def test_covered_answer_is_released_at_once(gate):
    released = []
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)
    gate.writer.pending.pop()[1](None)
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)
    assert released == [True, True] and gate.writer.pending == []


@pytest.mark.parametrize(
    ("client", "name", "addresses", "outcome"),
    [
        ("10.244.1.11", "www.google.com", ["198.51.100.10"], "not-selected"),
        ("10.244.1.99", "www.google.com", ["198.51.100.10"], "unknown-client"),
        ("10.244.1.10", "www.cloudflare.com", ["198.51.100.20"], "name-not-allowed"),
        ("10.244.1.10", None, ["198.51.100.20"], "unmatchable-name"),
        ("10.244.1.10", "www.google.com", [], "no-addresses"),
        ("10.244.1.10", "www.google.com", ["127.0.0.1", "169.254.169.254"], "no-addresses"),
    ],
)
def test_nothing_to_write_is_released_at_once(gate, client, name, addresses, outcome):
    released = []
    gate.admit(client, "udp", query(name), answer(*addresses), released.append)
    assert released == [True]
    assert gate.writer.pending == []
    assert gate.stats.by_outcome()[outcome] == 1


def test_rebinding_guard_allows_only_public_addresses(gate):
    released = []
    gate.admit("10.244.1.10", "udp", query(), answer("127.0.0.1", "198.51.100.10"), released.append)
    ((writes, _done),) = gate.writer.pending
    assert [w.element[1] for w in writes] == ["198.51.100.10"]


def test_answers_to_names_not_allowed_are_remembered_for_drop_attribution(gate):
    released = []
    gate.admit("10.244.1.10", "udp", query("www.cloudflare.com"), answer("198.51.100.20"), released.append)
    gate.admit("10.244.1.11", "udp", query("www.cloudflare.com"), answer("198.51.100.21"), released.append)
    assert released == [True, True]
    assert gate.names.names_for("default/c", "198.51.100.20", 100.0) == {"www.cloudflare.com": None}
    assert len(gate.names) == 1  # the unselected pod is not enforced: nothing to explain later


def test_hold_time_counts_only_answers_that_waited_for_a_write():
    now = [100.0]
    gate = PolicyGate(
        PolicyIndex(load_text(POLICY)),
        AllowTable(TTLPolicy(5, 3600, refresh_slack=0.1)),
        AddressGuard(),
        HeldWriter(),
        "t",
        clock=lambda: now[0],
    )
    released = []
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)
    now[0] += 0.0004  # the kernel acknowledges 0.4 ms after the decision
    gate.writer.pending.pop()[1](None)
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)  # covered (slack)
    gate.admit("10.244.1.11", "udp", query(), answer("198.51.100.10"), released.append)  # not selected
    assert released == [True, True, True]
    summary = gate.hold_summary()
    assert summary["count"] == 1
    assert summary["p99_ms"] == 0.5  # the upper bound of the 0.3-0.5 ms bucket holding 0.4 ms
    assert summary["sum_s"] == pytest.approx(0.0004)


# The same policy with a pattern, its port a parameter.
PATTERN_POLICY = POLICY.replace("{name: www.google.com}", '{pattern: "*.example.com"}').replace("443", "%d")


def test_log_lines_name_the_rules_and_grants_of_the_policy_in_force():
    stream = io.StringIO()
    gate = PolicyGate(
        PolicyIndex(load_text(PATTERN_POLICY % 443)), AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0)), AddressGuard(),
        HeldWriter(), "t", clock=lambda: 100.0, decision_log=DecisionLog(stream, LogMode.ALL),
    )  # fmt: skip

    def line_for(name, address):
        gate.admit("10.244.1.10", "udp", query(name), answer(address), lambda ok: None)
        gate.writer.pending.pop()[1](None)
        return orjson.loads(stream.getvalue().splitlines()[-1])

    first = line_for("a.example.com", "198.51.100.1")
    second = line_for("b.example.com", "198.51.100.2")  # the same match: its text is made once
    assert first["rules"] == second["rules"] == ["default/p#egress[0] (*.example.com)"]
    assert first["grants"] == second["grants"] == ["tcp/443"]
    assert first["outcome"] == "allowed"
    gate.index = PolicyIndex(load_text(PATTERN_POLICY % 8443))  # a reload changes the rule's port
    third = line_for("c.example.com", "198.51.100.3")
    assert third["grants"] == ["tcp/8443"]
