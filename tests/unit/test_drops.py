"""The drop reporter: one line per denied connection, counted per pod; the unlogged counter's deltas."""

import asyncio
import socket

import pytest
import structlog

from fqdn_policy.agent.drops import DropReporter, RecentConnections
from fqdn_policy.enforcer.nflogsocket import GroupBusy
from fqdn_policy.enforcer.nflogwire import LoggedPacket
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: p}
spec:
  podSelector: {}
  egress: [{matches: [{name: www.google.com}]}]
---
{apiVersion: v1, kind: Pod, metadata: {name: c}, status: {podIPs: [{ip: 10.244.1.10}]}}
"""


class Gate:
    """Stands in for the PolicyGate: what a denied packet is explained against."""

    def __init__(self, names):
        self.index = PolicyIndex(load_text(POLICY))
        self.table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
        self.names = names


class Tables:
    """Stands in for the EnforcerTables: pod c's policy rejects; the unlogged counter of table t."""

    def rejects(self, index, ip):
        return ip == "10.244.1.10"

    def unlogged_packets(self, nft):
        return nft.counter("t", "drops_unlogged")


class CounterWriter:
    """Stands in for the SetWriter: `call` runs the function against a fake libnftables context."""

    def __init__(self):
        self.packets = 0
        self.fail = False

    async def call(self, fn):
        return fn(self)

    def counter(self, table, name):
        if self.fail:
            raise RuntimeError("no such table")
        return self.packets


@pytest.fixture
def reporter():
    clock = [0.0]
    denied = NameMemory()
    denied.record_denied("default/c", "www.cloudflare.com", ["198.51.100.20"], 0.0)
    out = DropReporter(4053, Gate(denied), Tables(), CounterWriter(), clock=lambda: clock[0])
    out.clock_value = clock
    return out


def syn(sport=40000, dst="198.51.100.20", prefix="fqdn-policy enforce", src="10.244.1.10"):
    return LoggedPacket(prefix, src, dst, "tcp", sport, 443)


def test_one_line_per_connection_and_a_count_per_pod(reporter):
    with structlog.testing.capture_logs() as logs:
        first = reporter.report(syn())
        assert reporter.report(syn()) is None  # the SYN retransmitted: same connection
        reporter.report(syn(sport=40001))  # a second connect
        reporter.report(syn(src="10.244.1.77"))  # no pod the agent knows
    assert first["pod"] == "default/c" and first["verdict"] == "reject"
    assert first["reason"] == "name-not-allowed"
    assert [e["event"] for e in logs] == ["egress.dropped"] * 3
    assert reporter.drops_by_pod == {"default/c": 2, "10.244.1.77": 1}


def test_audit_prefix_gives_would_drop(reporter):
    with structlog.testing.capture_logs() as logs:
        fields = reporter.report(syn(prefix="fqdn-policy audit"))
    assert fields["verdict"] == "accept (audit)"
    assert logs[0]["event"] == "egress.would_drop"


def test_other_users_of_the_group_are_ignored(reporter):
    assert reporter.report(syn(prefix="ulogd")) is None
    assert reporter.drops_by_pod == {}


def test_recent_connections_window_and_bound():
    recent = RecentConnections(window=10.0, limit=2)
    a, b, c = (("10.0.0.1", p, "192.0.2.1", "tcp", 443) for p in (1, 2, 3))
    assert recent.first_time(a, 0.0) and not recent.first_time(a, 9.0)
    assert recent.first_time(a, 10.0)  # a new attempt after the window is reported again
    assert recent.first_time(b, 11.0) and recent.first_time(c, 12.0)
    assert recent.first_time(a, 13.0)  # evicted by the bound


def test_unlogged_packets_are_reported_as_deltas(reporter):
    writer = reporter.writer
    writer.packets = 500  # counted before this agent started: not ours

    async def run():
        with structlog.testing.capture_logs() as logs:
            await reporter.check_unlogged()
            writer.packets = 530
            await reporter.check_unlogged()
            await reporter.check_unlogged()  # nothing new: no line
            writer.fail = True
            await reporter.check_unlogged()  # unreadable while repaired: skipped
            writer.fail, writer.packets = False, 4  # recreated counter
            await reporter.check_unlogged()
        return logs

    logs = asyncio.run(run())
    unlogged = [e for e in logs if e["event"] == "egress.unlogged"]
    assert [(e["packets"], e["since_start"]) for e in unlogged] == [(30, 30), (4, 34)]
    assert reporter.unlogged == 34


class FakeSocket:
    """Busy for the first `busy` binds, then bound; readable through a socketpair."""

    attempts = 0

    def __init__(self, group, busy=2):
        self.group, self.busy = group, busy
        self.pair = socket.socketpair()
        self.closed = False

    def fileno(self):
        return self.pair[0].fileno()

    def bind(self):
        FakeSocket.attempts += 1
        if FakeSocket.attempts <= self.busy:
            raise GroupBusy(16, "busy")

    def close(self):
        self.closed = True
        for s in self.pair:
            s.close()


def test_a_busy_group_is_retried_until_the_other_reader_lets_go(reporter, monkeypatch):
    monkeypatch.setattr("fqdn_policy.agent.drops.BIND_RETRY_SECONDS", 0.01)
    FakeSocket.attempts = 0
    reporter._socket_factory = FakeSocket

    async def run():
        with structlog.testing.capture_logs() as logs:
            await reporter.start()
            assert not reporter.reading
            for _ in range(200):
                if reporter.reading:
                    break
                await asyncio.sleep(0.01)
            reporter.stop()
        return logs

    logs = asyncio.run(run())
    events = [e["event"] for e in logs]
    assert events.count("drops.group_busy") == 1 and events.count("drops.reading") == 1
    assert FakeSocket.attempts == 3


def test_each_reporter_owns_its_counts_as_stats(reporter):
    other = DropReporter(4054, Gate(NameMemory()), Tables(), CounterWriter())
    reporter.report(syn())
    reporter.report(syn(src="10.244.1.77"))
    assert reporter.stats.by_pod == {"default/c": 1, "10.244.1.77": 1}
    assert other.stats.by_pod == {} and other.stats.unlogged == 0
