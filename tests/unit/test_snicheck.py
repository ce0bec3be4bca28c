"""The verify-sni queue reader's shell (fqdn_policy.agent.snicheck): the core's actions become NFQUEUE
verdicts with the right marks, denials become log lines and counts, held connections are ended by a
timer, and a queue held by another agent is retried. A stand-in socket records what would be sent."""

from __future__ import annotations

import asyncio
import os

import pytest
import structlog

from fqdn_policy.agent import snicheck
from fqdn_policy.agent.snicheck import SniChecker
from fqdn_policy.enforcer.nflogwire import LoggedPacket
from fqdn_policy.enforcer.nfqueuesocket import QueueBusy
from fqdn_policy.enforcer.nfqueuewire import NF_ACCEPT, NF_REPEAT, QueuedPacket, Verdict
from fqdn_policy.enforcer.sniruleset import VERDICT_DENY, VERDICT_OK
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sni import verifier
from tests.fuzz.sni_seeds import client_hello
from tests.unit.test_sni_judge import INDEX
from tests.unit.test_sni_verifier import ISN, data, syn

OTHER_BITS = 0x2  # the guard's bit, or anyone's: kept in the verdict's mark


class Policy:
    def __init__(self):
        self.index = INDEX  # default/c at 10.244.1.10, verified good.example on TCP 443 (test_sni_judge)
        self.table = AllowTable(TTLPolicy())
        self.table.resolutions.record("default/c", "good.example", {"198.51.100.7": 100.0})


class FakeQueue:
    busy_times = 0

    def __init__(self, queue):
        self.queue = queue
        self.pending: list[QueuedPacket] = []
        self.sent: list[Verdict] = []
        self.overflows = 0
        self.closed = False
        self.read_fd, self.write_fd = os.pipe()  # readable when a test says packets are waiting

    def fileno(self):
        return self.read_fd

    def bind(self):
        if FakeQueue.busy_times:
            FakeQueue.busy_times -= 1
            raise QueueBusy(16, "busy")

    def arrive(self, *packets):
        self.pending += packets
        os.write(self.write_fd, b"x")

    def receive(self):
        os.read(self.read_fd, 64)
        out, self.pending = self.pending, []
        return out

    def verdicts(self, verdicts):
        self.sent += verdicts

    def close(self):
        self.closed = True
        os.close(self.read_fd)
        os.close(self.write_fd)


class FakeSynLog:
    """The NFLOG group the SYNs are copied to."""

    def __init__(self, group):
        self.group = group
        self.pending: list[LoggedPacket] = []
        self.overflows = 0
        self.read_fd, self.write_fd = os.pipe()

    def fileno(self):
        return self.read_fd

    def bind(self):
        pass

    def copy(self, packet):
        self.pending.append(LoggedPacket("", "", "", "tcp", None, None, packet))
        os.write(self.write_fd, b"x")

    def read(self):
        out, self.pending = self.pending, []
        return out

    def close(self):
        os.close(self.read_fd)
        os.close(self.write_fd)


def queued(packet_id, payload, mark=OTHER_BITS):
    return QueuedPacket(4054, packet_id, 0x0800, 2, mark, payload, len(payload))


async def started(audit=False, logs=None):
    sockets = []
    logs = [] if logs is None else logs

    def factory(queue):
        sockets.append(FakeQueue(queue))
        return sockets[-1]

    def syn_log(group):
        logs.append(FakeSynLog(group))
        return logs[-1]

    checker = SniChecker(4054, Policy(), audit=audit, socket_factory=factory, syn_log_factory=syn_log)
    checker.start()
    return checker, sockets


async def settle(seconds=0.05):
    await asyncio.sleep(seconds)


def test_verdicts_and_marks_for_an_allowed_and_a_denied_connection():
    async def main():
        checker, (sock,) = await started()
        with structlog.testing.capture_logs() as logs:
            sock.arrive(queued(1, syn(sport=1)), queued(2, data(client_hello("good.example"), sport=1)))
            sock.arrive(queued(3, syn(sport=2)), queued(4, data(client_hello("evil.example"), sport=2)))
            await settle()
        assert sock.sent == [
            Verdict(1, NF_ACCEPT),
            Verdict(2, NF_REPEAT, OTHER_BITS | VERDICT_OK),
            Verdict(3, NF_ACCEPT),
            Verdict(4, NF_REPEAT, OTHER_BITS | VERDICT_DENY),
        ]
        (line,) = [entry for entry in logs if entry["event"] == "egress.sni_denied"]
        assert line["pod"] == "default/c" and line["presented"] == "evil.example"
        assert line["resolved"] == ["good.example"] and line["verdict"] == "reset"
        assert (line["destination"], line["port"], line["source_port"]) == ("198.51.100.7", 443, 2)
        assert checker.stats.connections == {("default/c", "allowed"): 1, ("default/c", "denied"): 1}
        checker.stop()
        assert sock.closed and not checker.stats.reading

    asyncio.run(main())


def test_audit_mode_lets_a_denial_through_and_logs_it_as_would_deny():
    async def main():
        checker, (sock,) = await started(audit=True)
        with structlog.testing.capture_logs() as logs:
            sock.arrive(queued(1, syn()), queued(2, data(client_hello("evil.example"))))
            await settle()
        assert sock.sent[-1] == Verdict(2, NF_REPEAT, OTHER_BITS | VERDICT_OK)
        assert [entry["event"] for entry in logs if entry["event"].startswith("egress.")] == [
            "egress.would_sni_deny"
        ]
        assert checker.stats.connections == {("default/c", "would_deny"): 1}
        checker.stop()

    asyncio.run(main())


def test_a_held_connection_is_denied_by_the_timer(monkeypatch):
    monkeypatch.setattr(verifier, "HOLD_SECONDS", 0.1)

    async def main():
        checker, (sock,) = await started()
        sock.arrive(queued(1, syn()), queued(2, data(client_hello("good.example")[:30])))
        await settle()
        assert sock.sent == [Verdict(1, NF_ACCEPT)] and checker.stats.held == 1
        await settle(0.3)
        assert sock.sent[-1] == Verdict(2, NF_REPEAT, OTHER_BITS | VERDICT_DENY)
        assert checker.stats.held == 0
        checker.stop()

    asyncio.run(main())


def test_data_whose_syn_copy_never_comes_is_denied_after_the_grace(monkeypatch):
    monkeypatch.setattr(verifier, "SYN_GRACE_SECONDS", 0.05)

    async def main():
        checker, (sock,) = await started()
        sock.arrive(queued(2, data(client_hello("good.example"), sport=9)))
        await settle(0.2)
        assert sock.sent == [Verdict(2, NF_REPEAT, OTHER_BITS | VERDICT_DENY)]
        checker.stop()

    asyncio.run(main())


def test_a_queue_held_by_another_agent_is_retried(monkeypatch):
    monkeypatch.setattr(snicheck, "BIND_RETRY_SECONDS", 0.05)
    FakeQueue.busy_times = 2

    async def main():
        with structlog.testing.capture_logs() as logs:
            checker, sockets = await started()
            assert not checker.stats.reading
            await settle(0.3)
        assert checker.stats.reading and len(sockets) == 3
        assert [e["event"] for e in logs if e["event"].startswith("sni.")] == [
            "sni.queue_busy",
            "sni.reading",
        ]
        sockets[-1].arrive(queued(1, syn(seq=ISN)))
        await settle()
        assert sockets[-1].sent == [Verdict(1, NF_ACCEPT)]
        checker.stop()

    asyncio.run(main())


@pytest.fixture(autouse=True)
def no_busy():
    FakeQueue.busy_times = 0


def test_the_syn_copy_from_nflog_anchors_the_stream_and_is_read_before_the_queue():
    """The datapath copies SYNs to NFLOG (not held): a connection's first data is decided against it,
    even when both sockets are readable in the same turn and the queue's reader runs first."""

    async def main():
        syn_logs = []
        checker, (sock,) = await started(logs=syn_logs)
        (copies,) = syn_logs
        assert copies.group == 4054
        copies.copy(syn(sport=7))
        sock.arrive(queued(1, data(client_hello("good.example"), sport=7)))
        checker._readable()  # the queue first: the copy must still be taken before the data
        assert sock.sent == [Verdict(1, NF_REPEAT, OTHER_BITS | VERDICT_OK)]
        sock.arrive(queued(2, data(client_hello("good.example"), sport=8)))  # its copy comes late
        await settle()
        assert sock.sent[-1].packet_id == 1
        copies.copy(syn(sport=8))
        await settle()
        assert sock.sent[-1] == Verdict(2, NF_REPEAT, OTHER_BITS | VERDICT_OK)
        checker.stop()

    asyncio.run(main())


def test_a_queue_that_cannot_be_bound_is_logged_and_the_agent_goes_on():
    """Not busy but failing (say, nfnetlink_queue missing): one error line, no exception out of start."""

    def broken(queue):
        raise OSError(93, "Protocol not supported")

    async def main():
        checker = SniChecker(4054, Policy(), socket_factory=broken, syn_log_factory=FakeSynLog)
        with structlog.testing.capture_logs() as logs:
            checker.start()
        assert not checker.stats.reading
        assert [e["event"] for e in logs] == ["sni.queue_unavailable"]
        checker.stop()

    asyncio.run(main())
