"""The verify-sni queue reader: the thin shell around fqdn_policy.sni.verifier.

It binds the NFQUEUE queue the check chain sends to (fqdn_policy.enforcer.sniruleset) and the NFLOG
group of the same number the SYNs are copied to, hands every SYN copy and queued packet to the core, and
answers the kernel in the same turn of the loop. SYN copies are read first, whichever socket woke the
loop: a connection's copy was in its socket a round trip before its first data could be queued. Empty
segments are accepted, a decided connection's packets are re-run through the forward chain (NF_REPEAT)
with the verdict's packet mark, which the chain turns into the connection's conntrack mark. Packets of a
connection whose first bytes are incomplete get no verdict yet: the kernel holds them, and the core's
deadline (a timer here) ends the wait. In audit mode a denial is logged and the connection let through.

The queue has no bypass: while no agent reads it (stopped, restarting), new connections to verified
destinations wait in the kernel's queue and are dropped when it is full, then retried by their
clients; packets held at a restart are dropped with the socket. An agent that starts while the one it
replaces still holds the queue retries every BIND_RETRY_SECONDS, like the NFLOG reader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from fqdn_policy.agent.netlinkbind import BIND_RETRY_SECONDS, bind_or_retry
from fqdn_policy.enforcer.nflogsocket import GroupBusy, NflogSocket
from fqdn_policy.enforcer.nfqueuesocket import NfqueueSocket, QueueBusy
from fqdn_policy.enforcer.nfqueuewire import NF_ACCEPT, NF_REPEAT, Verdict
from fqdn_policy.enforcer.sniruleset import VERDICT_DENY, VERDICT_OK
from fqdn_policy.logs import get
from fqdn_policy.policy.decide.snijudge import SniJudgement, SniStats, judge_presented
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.sni.inspect import Inspection
from fqdn_policy.sni.verifier import Action, Decided, SniVerifier, Step


class SniPolicy(Protocol):
    """What a connection is judged against (the PolicyGate): read at each decision, since a reload
    swaps the index."""

    @property
    def index(self) -> PolicyIndex: ...

    @property
    def table(self) -> AllowTable: ...


class SniChecker:
    def __init__(
        self,
        queue: int,
        policy: SniPolicy,
        audit: bool = False,
        clock: Callable[[], float] = time.monotonic,
        socket_factory: Callable[[int], NfqueueSocket] = NfqueueSocket,
        syn_log_factory: Callable[[int], NflogSocket] = NflogSocket,
    ) -> None:
        self.queue = queue
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.stats = SniStats()
        self.core = SniVerifier(self._judge)
        self._socket_factory = socket_factory
        self._syn_log_factory = syn_log_factory
        self._sock: NfqueueSocket | None = None
        self._syns: NflogSocket | None = None
        self._syn_overflows = 0
        self._marks: dict[int, int] = {}  # packet id -> its mark, while the kernel holds it
        self._timer: asyncio.TimerHandle | None = None
        self._binding: asyncio.Task[None] | None = None
        self.log = get("fqdn_policy.sni")

    def start(self) -> None:
        self._binding = bind_or_retry(
            self._bind,
            (QueueBusy, GroupBusy),
            lambda: self.log.warning(
                "sni.queue_busy",
                queue=self.queue,
                detail="another process (the agent this one replaces?) reads the queue; retrying",
            ),
            lambda error: self.log.error("sni.queue_unavailable", queue=self.queue, error=str(error)),
            BIND_RETRY_SECONDS,
        )

    def _bind(self) -> None:
        syns = self._syn_log_factory(self.queue)
        try:
            syns.bind()
        except OSError:
            syns.close()
            raise
        sock = self._socket_factory(self.queue)
        try:
            sock.bind()
        except OSError:
            sock.close()
            syns.close()
            raise
        self._syns, self._sock = syns, sock
        loop = asyncio.get_running_loop()
        loop.add_reader(syns.fileno(), self._read_syns)
        loop.add_reader(sock.fileno(), self._readable)
        self.stats.reading = True
        self.log.info("sni.reading", queue=self.queue, mode="audit" if self.audit else "enforce")

    def stop(self) -> None:
        """Close the queue socket: the kernel unbinds the queue at once for the agent that follows."""
        if self._binding is not None:
            self._binding.cancel()
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._syns is not None:
            loop.remove_reader(self._syns.fileno())
            self._syns.close()
            self._syns = None
        self.stats.reading = False

    def _read_syns(self) -> None:
        if self._syns is None:
            return
        try:
            logged = self._syns.read()
        except OSError as error:
            self.log.error("sni.read_failed", error=str(error))
            return
        now, verdicts = self.clock(), []
        for packet in logged:
            self._answer(self.core.on_syn(packet.packet, now), verdicts)  # data that came first
        self._send(verdicts)
        if self._syns.overflows > self._syn_overflows:
            # Those connections' first data will be denied ("no SYN seen"): say why once per burst.
            self.log.warning("sni.syn_copies_lost", times=self._syns.overflows - self._syn_overflows)
            self._syn_overflows = self._syns.overflows
        self._arm()

    def _readable(self) -> None:
        assert self._sock is not None
        self._read_syns()
        try:
            packets = self._sock.receive()
        except OSError as error:
            self.log.error("sni.read_failed", error=str(error))
            return
        now = self.clock()
        verdicts: list[Verdict] = []
        for packet in packets:
            self._marks[packet.packet_id] = packet.mark
            self._answer(self.core.on_packet(packet.packet_id, packet.payload, now), verdicts)
        self._send(verdicts)
        if self._sock.overflows > self.stats.queue_overflows:
            self.log.warning("sni.queue_overflow", times=self._sock.overflows - self.stats.queue_overflows)
            self.stats.queue_overflows = self._sock.overflows
        self.stats.unreadable_packets = self.core.unreadable
        self._arm()

    def _tick(self) -> None:
        self._timer = None
        verdicts: list[Verdict] = []
        self._answer(self.core.on_tick(self.clock()), verdicts)
        self._send(verdicts)
        self._arm()

    def _arm(self) -> None:
        self.stats.held = self.core.held_flows
        deadline = self.core.next_deadline()
        if deadline is None or self._timer is not None:
            return
        delay = max(0.0, deadline - self.clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _answer(self, step: Step, verdicts: list[Verdict]) -> None:
        for packet_id, action in step.actions:
            mark = self._marks.pop(packet_id, 0)
            if action is Action.PASS:
                verdicts.append(Verdict(packet_id, NF_ACCEPT))
            elif action is Action.ALLOW or self.audit:
                verdicts.append(Verdict(packet_id, NF_REPEAT, mark | VERDICT_OK))
            else:
                verdicts.append(Verdict(packet_id, NF_REPEAT, mark | VERDICT_DENY))
        for decided in step.decided:
            self._report(decided)

    def _send(self, verdicts: list[Verdict]) -> None:
        if verdicts and self._sock is not None:
            try:
                self._sock.verdicts(verdicts)
            except OSError as error:  # the kernel drops what it holds when the queue goes away
                self.log.error("sni.verdict_failed", error=str(error), packets=len(verdicts))

    def _judge(self, src: str, dst: str, port: int, inspection: Inspection) -> tuple[bool, Any]:
        index, table = self.policy.index, self.policy.table
        judged = judge_presented(index, table, src, dst, port, inspection.name, inspection.reason)
        return judged.allowed, judged

    def _report(self, decided: Decided) -> dict[str, Any] | None:
        """Count one decided connection and log it when denied; returns the line's fields."""
        judged: SniJudgement = decided.detail
        src, dst, sport, dport = decided.flow
        pod = judged.pod or src
        if decided.allowed:
            self.stats.count(pod, "allowed")
            return None
        self.stats.count(pod, "would_deny" if self.audit else "denied")
        fields: dict[str, Any] = {
            "pod": judged.pod,
            "source": src,
            "source_port": sport,
            "destination": dst,
            "port": dport,
            "kind": decided.inspection.kind,
            "presented": decided.inspection.name,
            "reason": judged.reason,
            "resolved": list(judged.resolved),
            "verdict": "accept (audit)" if self.audit else "reset",
        }
        self.log.info("egress.would_sni_deny" if self.audit else "egress.sni_denied", **fields)
        return fields
