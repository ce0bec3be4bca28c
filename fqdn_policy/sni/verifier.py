"""The verify-sni core: queued packets in, per-packet actions and per-connection decisions out.

Sans-I/O in the style of the DNS decision core: the queue reader hands in each queued packet (whole
IP packet, as NFQUEUE copies it) with the time, and gets back what to do with every packet the kernel
holds, plus one `Decided` per connection for the log line and the metrics. `on_tick` ends the waits.

What reaches it (fqdn_policy.enforcer.sniruleset): a copy of a new connection's SYN, through NFLOG
(`on_syn`: the SYN itself is not held; its sequence number anchors the stream, so a client cannot show
its second segment first, dressed as a ClientHello for an allowed name), then, queued, its segments with
payload until the agent has decided. A SYN that arrives queued (`on_packet`) counts the same. The
segments of a ClientHello split across packets are held (no verdict, so the kernel keeps them and the
server sees nothing) until the whole ClientHello or request head is there, at most HOLD_SECONDS; then
every held packet gets the connection's verdict. Packets of a decided connection still in the queue
(sent before the verdict reached the kernel) get the same verdict.

Data that comes before its SYN's copy (different sockets; measured about once in 15,000 connections)
waits for it up to SYN_GRACE_SECONDS. A data segment of a connection whose SYN this agent never saw (it
started between the SYN and the first data, the SYN copy was lost to a full socket buffer, or the SYN
memory was full) is denied: without the anchor the verdict would be a guess.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

from fqdn_policy.sni.inspect import DONE, Inspection, inspect_first_bytes
from fqdn_policy.sni.reassembly import FirstBytes
from fqdn_policy.sni.segment import ACK, SYN, Segment, flow_key, parse_segment

FlowKey = tuple[str, str, int, int]  # source, destination, source port, destination port

# A ClientHello's segments leave the client together (one write, within the initial window), so
# they arrive within a round trip; a client that waits for an ACK before its second segment (Nagle
# on a second small write) never gets one while the first is held, and is denied after this long.
HOLD_SECONDS = 2.0
MAX_HELD_FLOWS = 4096  # connections awaiting the rest of their first bytes (≤ 8 segments each)
# The SYN's copy (NFLOG) and the first data (NFQUEUE) come through different sockets, and the copy was
# measured arriving after the data about once in 15,000 connections (bench.sniqueue): data without a
# SYN waits this long for it before the connection is denied.
SYN_GRACE_SECONDS = 0.25
SYN_SECONDS = 120.0  # how long a SYN's sequence number is kept waiting for the connection's first data
MAX_SYNS = 65536
DECIDED_SECONDS = 10.0  # stragglers of a decided connection arrive within a round trip
MAX_DECIDED = 65536


class Action(enum.Enum):
    PASS = "pass"  # nothing to decide: the SYN, a segment without payload
    ALLOW = "allow"  # the connection presented an allowed name
    DENY = "deny"  # it did not (or could not be read)


class PacketAction(NamedTuple):
    packet_id: int
    action: Action


class Decided(NamedTuple):
    flow: FlowKey
    inspection: Inspection
    allowed: bool
    detail: Any  # what the judge said (fqdn_policy.policy.decide.snijudge.SniJudgement in the agent)
    segments: int  # the segments the first bytes came in


class Step(NamedTuple):
    actions: list[PacketAction]
    decided: list[Decided]


# (source, destination, destination port, inspection) -> (allowed, detail)
Judge = Callable[[str, str, int, Inspection], tuple[bool, Any]]


class _Held:
    __slots__ = ("first", "packets", "since")

    def __init__(self, start: int, now: float) -> None:
        self.first = FirstBytes(start)
        self.packets: list[int] = []
        self.since = now


def _refused(reason: str) -> Inspection:
    return Inspection(DONE, "other", None, reason)


class SniVerifier:
    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self._syns: dict[FlowKey, tuple[int, float]] = {}  # stream start (SYN seq + 1), when seen
        self._held: dict[FlowKey, _Held] = {}
        # Data whose SYN copy has not arrived yet: (packet id, segment) in arrival order, since when.
        self._awaiting_syn: dict[FlowKey, tuple[list[tuple[int, Segment]], float]] = {}
        self._decided: dict[FlowKey, tuple[Action, float]] = {}
        self.unreadable = 0  # queued packets that were not a whole TCP segment (denied)

    @property
    def held_flows(self) -> int:
        return len(self._held) + len(self._awaiting_syn)

    def on_packet(self, packet_id: int, packet: bytes, now: float) -> Step:
        segment = parse_segment(packet)
        if segment is None:
            self.unreadable += 1
            return Step([PacketAction(packet_id, Action.DENY)], [])
        key = flow_key(segment)
        if segment.flags & SYN:
            return self._syn(packet_id, key, segment, now)
        decided = self._decided.get(key)
        if decided is not None:
            return Step([PacketAction(packet_id, decided[0])], [])
        if not segment.payload:
            return Step([PacketAction(packet_id, Action.PASS)], [])
        return self._data(packet_id, key, segment, now)

    def on_syn(self, packet: bytes, now: float) -> Step:
        """A connection's SYN, copied to the agent without holding it (NFLOG): where its stream starts.
        Data of the connection that came first (awaiting this copy) is taken up now."""
        segment = parse_segment(packet)
        if segment is None or not segment.flags & SYN:
            return Step([], [])
        return self._anchored(flow_key(segment), segment, now, Step([], []))

    def _anchored(self, key: FlowKey, syn: Segment, now: float, step: Step) -> Step:
        """Note the SYN, then take up the data that came before it."""
        self._note_syn(key, syn, now)
        waiting, _ = self._awaiting_syn.pop(key, ([], now))
        for packet_id, early in waiting:
            later = self._data(packet_id, key, early, now)
            step.actions.extend(later.actions)
            step.decided.extend(later.decided)
        return step

    def _data(self, packet_id: int, key: FlowKey, segment: Segment, now: float) -> Step:
        decided = self._decided.get(key)
        if decided is not None:
            return Step([PacketAction(packet_id, decided[0])], [])
        held = self._held.get(key)
        if held is None:
            return self._first_data(packet_id, key, segment, now)
        held.packets.append(packet_id)
        return self._advance(key, held, segment, now)

    def on_tick(self, now: float) -> Step:
        """Deny the connections whose first bytes are still incomplete after HOLD_SECONDS; forget old
        SYNs and verdicts."""
        step = Step([], [])
        for key, held in list(self._held.items()):
            if now - held.since >= HOLD_SECONDS:
                reason = f"first bytes incomplete after {HOLD_SECONDS:g} s"
                self._decide(key, held, _refused(reason), step, now)
        for key, (waiting, since) in list(self._awaiting_syn.items()):
            if now - since >= SYN_GRACE_SECONDS:
                del self._awaiting_syn[key]
                unanchored = _Held(0, since)
                unanchored.packets = [packet_id for packet_id, _ in waiting]
                self._decide(key, unanchored, _refused("no SYN seen for this connection"), step, now)
        _forget_older(self._syns, now - SYN_SECONDS)
        _forget_older(self._decided, now - DECIDED_SECONDS)
        return step

    def next_deadline(self) -> float | None:
        """When on_tick next has a held connection to end, if any is held."""
        deadlines = [held.since + HOLD_SECONDS for held in self._held.values()]
        deadlines += [since + SYN_GRACE_SECONDS for _, since in self._awaiting_syn.values()]
        return min(deadlines, default=None)

    def _syn(self, packet_id: int, key: FlowKey, segment: Segment, now: float) -> Step:
        return self._anchored(key, segment, now, Step([PacketAction(packet_id, Action.PASS)], []))

    def _note_syn(self, key: FlowKey, segment: Segment, now: float) -> None:
        if segment.flags & ACK:
            return  # a SYN-ACK is the reply direction
        # A new SYN on a decided or held tuple is a new connection (the old one's conntrack entry is
        # gone, or the kernel would not have sent it as unverified); a retransmitted one is the same.
        self._decided.pop(key, None)
        self._syns.pop(key, None)
        self._syns[key] = ((segment.seq + 1) & 0xFFFFFFFF, now)
        while len(self._syns) > MAX_SYNS:
            del self._syns[next(iter(self._syns))]

    def _first_data(self, packet_id: int, key: FlowKey, segment: Segment, now: float) -> Step:
        step = Step([], [])
        held = _Held(0, now)
        held.packets.append(packet_id)
        syn = self._syns.pop(key, None)
        if syn is None:
            if self.held_flows >= MAX_HELD_FLOWS:
                self._decide(
                    key, held, _refused("too many connections awaiting their first bytes"), step, now
                )
            else:  # its SYN copy may still be on its way: wait for it, briefly
                self._awaiting_syn.setdefault(key, ([], now))[0].append((packet_id, segment))
            return step
        if self.held_flows >= MAX_HELD_FLOWS:
            self._decide(key, held, _refused("too many connections awaiting their first bytes"), step, now)
            return step
        held.first = FirstBytes(syn[0])
        self._held[key] = held
        return self._advance(key, held, segment, now)

    def _advance(self, key: FlowKey, held: _Held, segment: Segment, now: float) -> Step:
        step = Step([], [])
        if not held.first.add(segment.seq, segment.payload):
            reason = "segments out of order, disagreeing or too many"
            self._decide(key, held, _refused(reason), step, now)
            return step
        inspection = inspect_first_bytes(held.first.data, segment.dport)
        if inspection.state is DONE:
            self._decide(key, held, inspection, step, now)
        return step

    def _decide(self, key: FlowKey, held: _Held, inspection: Inspection, step: Step, now: float) -> None:
        self._held.pop(key, None)
        allowed, detail = self.judge(key[0], key[1], key[3], inspection)
        action = Action.ALLOW if allowed else Action.DENY
        self._decided[key] = (action, now)
        while len(self._decided) > MAX_DECIDED:
            del self._decided[next(iter(self._decided))]
        step.actions.extend(PacketAction(packet_id, action) for packet_id in held.packets)
        step.decided.append(Decided(key, inspection, allowed, detail, held.first.segments))


def _forget_older(memory: dict[FlowKey, tuple[Any, float]], before: float) -> None:
    """Entries are in insertion order, which is time order: drop from the front."""
    while memory:
        key = next(iter(memory))
        if memory[key][1] >= before:
            return
        del memory[key]
