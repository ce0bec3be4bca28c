"""Forwarding to the upstream resolvers, and believing only their real answers.

UDP: a few connected sockets per upstream (the kernel then drops datagrams from any other address or
port), each query under a fresh random ID on a random socket, and an answer accepted only if that
socket has that ID pending and the answer repeats the query's question. Anything else is counted and
dropped, so no spoofed or late answer reaches a pod or a set.

An unanswered attempt moves to the next upstream; when every attempt is used up the caller gets None
(and sends SERVFAIL), so a client never waits longer than attempts x attempt timeout.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from fqdn_policy.dnsproxy.parsememo import AnswerMemo
from fqdn_policy.dnsproxy.udpsocket import UdpEndpoint
from fqdn_policy.dnsproxy.wire import Answer, Query, WireError, parse_answer, with_id
from fqdn_policy.settings import (
    SettingError,
    host_port,
    number,
    positive_seconds,
    setting,
    validate,
    whole,
    whole_at_least,
)

AnswerCallback = Callable[[bytes | None, Answer | None], None]

SOCKETS_PER_UPSTREAM = 4
SWEEP_INTERVAL = 0.05
DEFAULT_MAX_IN_FLIGHT = 8192


class _RandomIds:
    """Unpredictable 32-bit draws from a buffer of os.urandom: one syscall per 16k draws, not per query.

    A query takes one draw: its 16-bit ID from the low half, its socket from the high half, so the two
    are independent (deriving the socket from the ID's bits would tell a spoofer which IDs each source
    port can carry)."""

    def __init__(self) -> None:
        self._draws: list[int] = []

    def draw(self) -> int:
        draws = self._draws
        if not draws:
            raw = os.urandom(65536)
            draws.extend(struct.unpack(f"!{len(raw) // 4}I", raw))
        return draws.pop()

    def next(self) -> int:
        """A 16-bit ID."""
        return self.draw() & 0xFFFF


class UpstreamAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    servers: tuple[UpstreamAddress, ...] = setting(
        (),
        "--upstream",
        "upstream resolver IP:PORT (repeatable: tried in turn when one does not answer)",
        parse=lambda text: UpstreamAddress(*host_port(text)),
        metavar="IP:PORT",
        repeat=True,
    )
    timeout: float = setting(
        1.0,
        "--upstream-timeout",
        "seconds to wait for one upstream attempt",
        parse=number,
        check=positive_seconds,
    )
    attempts: int = setting(
        3,
        "--attempts",
        "upstream attempts before the client gets SERVFAIL",
        parse=whole,
        check=whole_at_least(1),
    )
    max_in_flight: int = setting(
        DEFAULT_MAX_IN_FLIGHT,
        "--max-in-flight",
        "unanswered upstream queries at once; beyond it clients get SERVFAIL",
        parse=whole,
        check=whole_at_least(1),
    )

    def __post_init__(self) -> None:
        validate(self)
        if not self.servers:
            raise SettingError("--upstream", "at least one upstream is needed")

    @property
    def addresses(self) -> list[UpstreamAddress]:
        return [UpstreamAddress(*server) for server in self.servers]


@dataclass(slots=True)
class _Pending:
    query: Query
    wire: bytes  # the query as received, original ID
    callback: AnswerCallback
    attempt: int
    upstream: int
    ident: int
    socket_index: int
    deadline: float


@dataclass(slots=True)
class ForwarderStats:
    forwarded: int = 0
    answered: int = 0
    timeouts: int = 0
    rejected: int = 0  # answers with an unknown ID, a wrong question, or unparseable
    failed: int = 0  # queries that got no answer from any upstream
    overloaded: int = 0  # queries refused because too many were in flight
    per_upstream_timeouts: dict[str, int] = field(default_factory=dict)


class _UpstreamSocket:
    def __init__(self, forwarder: Forwarder, index: int, upstream: UpstreamAddress) -> None:
        self.index = index
        self.pending: dict[int, _Pending] = {}
        self.endpoint = UdpEndpoint.connect(
            upstream.host, upstream.port, partial(forwarder._on_datagram, self), forwarder._after_answers
        )


class Forwarder:
    def __init__(
        self,
        config: UpstreamConfig,
        on_latency: Callable[[float], None] | None = None,
        after_answers: Callable[[], None] | None = None,
    ) -> None:
        """`on_latency(seconds)` is told each accepted answer's round trip (for metrics); `after_answers()`
        is called after each burst of upstream answers has been handed to the callbacks: whoever holds
        those answers (the policy gate's writer) can finish them then instead of at the end of the loop
        turn, after every other socket's burst (which at saturation is tens of milliseconds)."""
        self.upstreams = config.addresses
        self.attempt_timeout = config.timeout
        self.attempts = config.attempts
        self.stats = ForwarderStats()
        self._sockets: list[list[_UpstreamSocket]] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._preferred = 0
        self._ids = _RandomIds()
        self.answers = AnswerMemo()
        self.max_in_flight = config.max_in_flight
        self.in_flight = 0
        self._on_latency = on_latency
        self._clock = time.monotonic  # what loop.time() returns, without finding the running loop
        self.after_answers = after_answers

    async def start(self) -> None:
        for upstream in self.upstreams:
            self._sockets.append([_UpstreamSocket(self, i, upstream) for i in range(SOCKETS_PER_UPSTREAM)])
        self._schedule_sweep()

    def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for group in self._sockets:
            for sock in group:
                sock.endpoint.close()

    def forward(self, query: Query, wire: bytes, callback: AnswerCallback) -> None:
        """Send `wire` upstream; `callback(answer_wire_with_original_id, parsed)` or (None, None).

        Beyond `max_in_flight` unanswered queries the caller gets (None, None) at once: memory stays
        bounded and the client gets SERVFAIL instead of a query that can never be tracked.
        """
        if self.in_flight >= self.max_in_flight:
            self.stats.overloaded += 1
            callback(None, None)
            return
        self.in_flight += 1
        self._send(_Pending(query, wire, callback, 0, self._preferred, 0, 0, 0.0))

    def _send(self, pending: _Pending) -> None:
        group = self._sockets[pending.upstream]
        draw = self._ids.draw()
        sock = group[(draw >> 16) % len(group)]
        ident = draw & 0xFFFF
        while ident in sock.pending:  # at most max_in_flight of 65536 are taken, so this ends quickly
            ident = self._ids.next()
        pending.ident = ident
        pending.socket_index = sock.index
        pending.deadline = self._clock() + self.attempt_timeout
        sock.pending[ident] = pending
        self.stats.forwarded += 1
        sock.endpoint.send(with_id(pending.wire, ident))

    def _on_datagram(self, sock: _UpstreamSocket, data: bytes, _addr: object = None) -> None:
        if len(data) < 2:
            self.stats.rejected += 1
            return
        ident = struct.unpack_from("!H", data)[0]
        pending = sock.pending.get(ident)
        if pending is None:
            self.stats.rejected += 1
            return
        try:
            answer = self.answers.parse(data, pending.query.question)
        except WireError:
            self.stats.rejected += 1  # keep waiting: the real answer may still come
            return
        del sock.pending[ident]
        self.in_flight -= 1
        self.stats.answered += 1
        self._preferred = pending.upstream
        if self._on_latency is not None:
            # the attempt's send time is its deadline less the attempt timeout: no extra field per query
            self._on_latency(self._clock() - pending.deadline + self.attempt_timeout)
        pending.callback(with_id(data, pending.query.id), answer)

    def _after_answers(self) -> None:
        if self.after_answers is not None:
            self.after_answers()

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        """Retry or give up on the attempts past their deadline. What is unanswered is what the sockets'
        tables still hold, so a sweep reads those (a few hundred entries at saturation) rather than
        every query keeping a place in a queue of deadlines until the next sweep."""
        now = self._clock()
        expired = [
            pending
            for group in self._sockets
            for sock in group
            for pending in sock.pending.values()
            if pending.deadline <= now
        ]
        expired.sort(key=lambda pending: pending.deadline)  # the oldest attempt moves on first
        for pending in expired:
            del self._sockets[pending.upstream][pending.socket_index].pending[pending.ident]
            self.stats.timeouts += 1
            name = str(self.upstreams[pending.upstream])
            self.stats.per_upstream_timeouts[name] = self.stats.per_upstream_timeouts.get(name, 0) + 1
            if pending.attempt + 1 < self.attempts:
                pending.attempt += 1
                pending.upstream = (pending.upstream + 1) % len(self.upstreams)
                if pending.upstream != self._preferred and len(self.upstreams) > 1:
                    self._preferred = pending.upstream
                self._send(pending)
            else:
                self.in_flight -= 1
                self.stats.failed += 1
                pending.callback(None, None)
        self._schedule_sweep()

    async def forward_tcp(self, query: Query, wire: bytes) -> tuple[bytes, Answer] | None:
        """One query over TCP (the client's retry after TC), with the same failover and checks."""
        start = self._preferred
        for attempt in range(self.attempts):
            upstream = self.upstreams[(start + attempt) % len(self.upstreams)]
            ident = self._ids.next()
            sent = asyncio.get_running_loop().time()
            try:
                data = await asyncio.wait_for(
                    _tcp_exchange(upstream, with_id(wire, ident)), self.attempt_timeout
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                self.stats.timeouts += 1
                continue
            if len(data) < 2 or struct.unpack_from("!H", data)[0] != ident:
                self.stats.rejected += 1
                continue
            try:
                answer = parse_answer(data, query.question)
            except WireError:
                self.stats.rejected += 1
                continue
            self.stats.answered += 1
            if self._on_latency is not None:
                self._on_latency(asyncio.get_running_loop().time() - sent)
            return with_id(data, query.id), answer
        self.stats.failed += 1
        return None


async def _tcp_exchange(upstream: UpstreamAddress, wire: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        length = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(length)
    finally:
        writer.close()
