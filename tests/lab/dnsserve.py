"""DNS over UDP (asyncio-dgram) and TCP (asyncio streams) in front of ``plan_reply``."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import asyncio_dgram
from dnslib import QTYPE, RCODE, DNSError, DNSHeader, DNSRecord
from dnslib.buffer import Buffer

from tests.lab.dnsanswer import plan_reply, to_wire, udp_limit
from tests.lab.querystats import QueryStats
from tests.lab.zone import Zone, canonical

# A client that opens a TCP connection and goes quiet should not pin a task forever.
TCP_IDLE_TIMEOUT = 30.0


def _formerr(data: bytes) -> bytes | None:
    """A reply to an unparsable message, if at least its header can be read."""
    if len(data) < 12:
        return None
    try:
        header = DNSHeader.parse(Buffer(data))
    except (DNSError, struct.error, IndexError):
        return None
    if header.qr:  # never answer a response: that is how reflection loops start
        return None
    return bytes(DNSRecord(DNSHeader(id=header.id, qr=1, rcode=RCODE.FORMERR)).pack())


class DnsService:
    def __init__(self, zone: Callable[[], Zone], stats: QueryStats) -> None:
        self._zone = zone
        self._stats = stats
        self._tasks: set[asyncio.Task[None]] = set()

    async def answer(self, data: bytes, transport: str, client: str) -> bytes | None:
        try:
            query = DNSRecord.parse(data)
        except (DNSError, struct.error, IndexError, ValueError, UnicodeError):
            return _formerr(data)
        if query.header.qr:
            return None
        if query.questions:
            q = query.q
            self._stats.record(canonical(q.qname), QTYPE[q.qtype], transport, client)
        plan = plan_reply(self._zone(), query)
        if plan.delay_ms:
            await asyncio.sleep(plan.delay_ms / 1000)
        if plan.reply is None:
            return None
        return to_wire(plan, udp_limit(query) if transport == "udp" else None)

    # -- UDP --------------------------------------------------------------------------------

    async def serve_udp(self, host: str, port: int) -> asyncio_dgram.aio.DatagramServer:
        stream = await asyncio_dgram.bind((host, port))
        self._spawn(self._udp_loop(stream))
        return stream

    async def _udp_loop(self, stream: asyncio_dgram.aio.DatagramServer) -> None:
        while True:
            try:
                data, addr = await stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError:
                # ICMP errors from earlier sends surface here; they are not ours to fix.
                continue
            # One task per query so a delayed name does not hold up the others.
            self._spawn(self._udp_reply(stream, data, addr))

    async def _udp_reply(self, stream: asyncio_dgram.aio.DatagramServer, data: bytes, addr: Any) -> None:
        # addr is the socket-level peer: (host, port) or (host, port, flowinfo, scope_id).
        reply = await self.answer(data, "udp", addr[0])
        if reply is not None:
            with contextlib.suppress(OSError, asyncio_dgram.TransportClosed):
                await stream.send(reply, addr)

    # -- TCP --------------------------------------------------------------------------------

    async def serve_tcp(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._tcp_conn, host, port, reuse_address=True)

    async def _tcp_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = str(writer.get_extra_info("peername")[0])
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack("!H", prefix)
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                # Sequential per connection: simpler than out-of-order pipelining, which
                # RFC 7766 allows but does not require.
                reply = await self.answer(data, "tcp", client)
                if reply is None:
                    continue  # "drop": leave the client waiting, like an unresponsive server
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception as exc:  # keep serving other clients whatever one of them did
            print(f"fakeinternet: tcp dns {client}: {exc!r}", file=sys.stderr, flush=True)
        finally:
            writer.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        # Tasks are only weakly referenced by the loop; keep them alive until done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
