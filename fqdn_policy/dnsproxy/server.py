"""The DNS listeners (UDP and TCP) and the path of one query through them.

The proxy knows nothing of policy: before an upstream answer goes back to the client it is handed to
an AnswerGate, which calls `release(True)` once whatever the answer allows is in the kernel, or
`release(False)` if that failed, in which case the client gets SERVFAIL rather than an answer whose
addresses would silently not work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from fqdn_policy.dnsproxy.codes import RCODE_REFUSED, RCODE_SERVFAIL
from fqdn_policy.dnsproxy.parsememo import QueryMemo
from fqdn_policy.dnsproxy.ratelimit import DEFAULT_RATE, ClientRateLimiter
from fqdn_policy.dnsproxy.udpsocket import UdpEndpoint
from fqdn_policy.dnsproxy.upstream import Forwarder
from fqdn_policy.dnsproxy.wire import (
    HEADER,
    Answer,
    Query,
    WireError,
    error_response,
    formerr_for,
    parse_query,
)
from fqdn_policy.settings import host_port, number, positive_seconds, setting, validate, whole, whole_at_least

Release = Callable[[bool], None]


class AnswerGate(Protocol):
    def admit(self, client_ip: str, transport: str, query: Query, answer: Answer, release: Release) -> None:
        """Call `release(True)` once the answer may go (at once when nothing has to be written first),
        or `release(False)` for SERVFAIL."""

    def failed(self, client_ip: str, transport: str, query: Query, reason: str) -> None: ...


@dataclass(slots=True)
class ServerStats:
    queries_udp: int = 0
    queries_tcp: int = 0
    malformed: int = 0
    servfail: int = 0
    refused: int = 0
    tcp_connections: int = 0
    tcp_refused: int = 0  # connections closed at once: over the cap, or a length prefix no query has
    tcp_idle_closed: int = 0


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """What one TCP client can hold. A connection is closed when a whole framed query has not arrived
    within `idle_timeout` of the previous answer (or the accept), so trickled bytes cannot keep it; a
    length prefix outside [header, max_query] closes it at once, before anything is read or buffered
    for it; beyond `max_connections` per listener a new connection is closed at once (the client falls
    back to UDP or another server) rather than queued."""

    idle_timeout: float = setting(
        10.0,
        "--tcp-idle-timeout",
        "seconds a DNS-over-TCP client has to send each whole query before it is disconnected",
        parse=number,
        check=positive_seconds,
    )
    max_connections: int = setting(
        1024,
        "--tcp-max-connections",
        "open DNS-over-TCP connections per listen address; beyond it new ones are closed at once",
        parse=whole,
        check=whole_at_least(1),
    )
    # A query is a header, one question (a name of at most 255 octets) and perhaps an OPT record with
    # a cookie or padding (RFC 8467 pads to 128-octet blocks): far below this. Answers are not bound.
    max_query: int = 4096

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Where DNS is served and what one client may ask."""

    listen: tuple[tuple[str, int], ...] = setting(
        (("127.0.0.1", 53),),
        "--listen",
        "address to serve DNS on, UDP and TCP (repeatable)",
        parse=host_port,
        repeat=True,
        metavar="IP:PORT",
        shown="127.0.0.1:53",
    )
    client_rate: float = setting(
        DEFAULT_RATE,
        "--client-rate",
        "UDP queries per second one client may send (bursts of twice that); beyond it REFUSED; 0 = no limit",
        parse=number,
        check=lambda v: (
            None if 0 <= v < float("inf") else "is not a rate of queries per second (0 = no limit)"
        ),
    )
    tcp: TcpLimits = field(default_factory=TcpLimits)

    def __post_init__(self) -> None:
        validate(self)

    def limiter(self) -> ClientRateLimiter | None:
        return ClientRateLimiter(self.client_rate, 2 * self.client_rate) if self.client_rate else None


class Resolver:
    """One query's path: parse, forward, gate, answer."""

    def __init__(
        self, forwarder: Forwarder, gate: AnswerGate, limiter: ClientRateLimiter | None = None
    ) -> None:
        self.forwarder = forwarder
        self.gate = gate
        self.limiter = limiter
        self._clock = asyncio.get_running_loop().time
        self.stats = ServerStats()
        self.queries = QueryMemo()

    def handle_udp(
        self, data: bytes, addr: tuple[str, int], send: Callable[[bytes, tuple[str, int]], None]
    ) -> None:
        self.stats.queries_udp += 1
        try:
            query = self.queries.parse(data)
        except WireError:
            self.stats.malformed += 1
            reply = formerr_for(data)
            if reply:
                send(reply, addr)
            return
        client_ip = addr[0]
        if self.limiter is not None and not self.limiter.allow(client_ip, self._clock()):
            self.stats.refused += 1  # REFUSED costs the node nothing and tells the client at once
            send(error_response(query, RCODE_REFUSED), addr)
            return
        # A partial, not a closure: one object per query rather than a function and a cell per name.
        self.forwarder.forward(query, data, partial(self._on_udp_answer, send, addr, query))

    def _on_udp_answer(
        self,
        send: Callable[[bytes, tuple[str, int]], None],
        addr: tuple[str, int],
        query: Query,
        wire: bytes | None,
        answer: Answer | None,
    ) -> None:
        client_ip = addr[0]
        if wire is None or answer is None:
            self._servfail(client_ip, "udp", query, "no upstream answered", lambda r: send(r, addr))
            return
        # A partial again, not a closure: it is built for every answer, held or not.
        self.gate.admit(client_ip, "udp", query, answer, partial(self._release_udp, send, addr, query, wire))

    def _release_udp(
        self,
        send: Callable[[bytes, tuple[str, int]], None],
        addr: tuple[str, int],
        query: Query,
        wire: bytes,
        ok: bool,
    ) -> None:
        send(wire if ok else self._servfail_wire(query), addr)

    async def handle_tcp_message(self, data: bytes, client_ip: str) -> bytes | None:
        self.stats.queries_tcp += 1
        try:
            query = parse_query(data)
        except WireError:
            self.stats.malformed += 1
            return formerr_for(data)
        result = await self.forwarder.forward_tcp(query, data)
        if result is None:
            out: list[bytes] = []
            self._servfail(client_ip, "tcp", query, "no upstream answered", out.append)
            return out[0]
        wire, answer = result
        released: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.gate.admit(
            client_ip, "tcp", query, answer, lambda ok: released.done() or released.set_result(ok)
        )
        return wire if await released else self._servfail_wire(query)

    def _servfail(
        self, client_ip: str, transport: str, query: Query, reason: str, send: Callable[[bytes], None]
    ) -> None:
        self.gate.failed(client_ip, transport, query, reason)
        send(self._servfail_wire(query))

    def _servfail_wire(self, query: Query) -> bytes:
        self.stats.servfail += 1
        return error_response(query, RCODE_SERVFAIL)


class DnsServer:
    """UDP and TCP listeners on one address."""

    def __init__(self, resolver: Resolver, host: str, port: int, tcp_limits: TcpLimits = TcpLimits()) -> None:
        self.resolver = resolver
        self.host = host
        self.port = port
        self.tcp_limits = tcp_limits
        self._udp: UdpEndpoint | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        handle = self.resolver.handle_udp

        def receive(data: bytes, addr: tuple[str, int]) -> None:
            # Answers go straight to the endpoint's sendto: once it is closed (stop), a late answer's
            # send fails there and is counted, as any failed send is.
            handle(data, addr, send)

        self._udp = UdpEndpoint.bind(self.host, self.port, receive)
        send = self._udp.sendto
        # A backlog as deep as the cap: a burst the loop has not accepted yet waits in the kernel
        # instead of losing its SYNs (asyncio's default is 100) and retrying a second later.
        self._tcp = await asyncio.start_server(
            self._serve_tcp, self.host, self.port, reuse_port=True, backlog=self.tcp_limits.max_connections
        )

    @property
    def bound_port(self) -> int:
        assert self._udp is not None
        return self._udp.port

    def pause(self) -> None:
        """Take no new queries (TCP accepts stop too) while the ones in flight are answered."""
        if self._udp:
            self._udp.pause()
        if self._tcp:
            self._tcp.close()

    async def stop(self) -> None:
        if self._udp:
            self._udp.close()
        if self._tcp:
            self._tcp.close()
        for task in list(self._connections):
            task.cancel()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.tcp_limits.max_connections:
            self.resolver.stats.tcp_refused += 1
            writer.close()
            return
        self._connections.add(task)
        self.resolver.stats.tcp_connections += 1
        client_ip = writer.get_extra_info("peername")[0]
        try:
            while True:
                data = await asyncio.wait_for(self._read_query(reader), self.tcp_limits.idle_timeout)
                if data is None:
                    self.resolver.stats.tcp_refused += 1
                    break
                reply = await self.resolver.handle_tcp_message(data, client_ip)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except TimeoutError:
            self.resolver.stats.tcp_idle_closed += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_query(self, reader: asyncio.StreamReader) -> bytes | None:
        """One length-prefixed query, or None when the prefix announces something no query is."""
        length = int.from_bytes(await reader.readexactly(2), "big")
        if not HEADER.size <= length <= self.tcp_limits.max_query:
            return None
        return await reader.readexactly(length)
