"""Non-blocking UDP sockets read in bursts straight from the event loop.

asyncio's datagram transports read one datagram per readiness event and wrap each in two layers of
callbacks. Reading until the socket is empty (bounded per event, so one busy socket cannot starve the
others) costs less per packet and hands the SetWriter a whole burst of answers to write in one
transaction. `after_burst` marks the end of a burst, and every AFTER_EVERY datagrams within one: the
forwarder uses it to have the writes its answers asked for done now, rather than after the rest of the
burst or every other socket's burst in the same loop turn.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

BURST = 64
AFTER_EVERY = 8  # datagrams between two `after_burst` calls inside one burst
RECEIVE_SIZE = 65535

Receive = Callable[[bytes, tuple[str, int]], None]


class UdpEndpoint:
    def __init__(
        self,
        sock: socket.socket,
        receive: Receive,
        after_burst: Callable[[], None] | None = None,
        peer: tuple[str, int] | None = None,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        # A connected socket's datagrams all come from `peer`: read with recv, which builds no address
        # (0.6 us less per datagram than recvfrom, measured), and hand on `peer`.
        self._peer = peer
        self._receive = receive
        self._after_burst = after_burst  # runs once after each burst that delivered something
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._drain)
        self.send_failures = 0
        self.closed = False
        self.paused = False

    @classmethod
    def bind(cls, host: str, port: int, receive: Receive, reuse_port: bool = True) -> UdpEndpoint:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if reuse_port:
            # A new agent binds beside the old one during a restart, so lookups never go unanswered.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        return cls(sock, receive)

    @classmethod
    def connect(
        cls, host: str, port: int, receive: Receive, after_burst: Callable[[], None] | None = None
    ) -> UdpEndpoint:
        """A connected socket: the kernel drops datagrams from any other address or port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.connect((host, port))
        return cls(sock, receive, after_burst, peer=(host, port))

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _drain(self) -> None:
        recvfrom, recv = self.sock.recvfrom, self.sock.recv
        peer = self._peer
        receive = self._receive
        after = self._after_burst
        pending = 0  # datagrams handed on since `after_burst` last ran
        for _ in range(BURST):
            try:
                if peer is None:
                    data, addr = recvfrom(RECEIVE_SIZE)
                else:
                    data, addr = recv(RECEIVE_SIZE), peer
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # ICMP errors surface here on connected sockets; the sweep handles silence
            receive(data, addr)
            pending += 1
            if pending == AFTER_EVERY and after is not None:
                # Within a long burst too: the first answers' writes go out without waiting for the
                # burst's last datagram, which bounds how long an answer is held at saturation.
                after()
                pending = 0
        if pending and after is not None:
            after()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError, OSError):
            # A full send buffer on a datagram socket: the client retries, as it would after a loss.
            self.send_failures += 1

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except ConnectionRefusedError:
            # A connected socket reports an earlier datagram's ICMP port-unreachable on the next call,
            # and that call sends nothing: without a second try, the first query after an upstream
            # outage would be lost and wait out its timeout. The report is consumed by the failed call.
            try:
                self.sock.send(data)
            except OSError:
                self.send_failures += 1
        except (BlockingIOError, InterruptedError, OSError):
            self.send_failures += 1

    def pause(self) -> None:
        """Stop reading but keep the socket, so answers to queries already read still go out."""
        if not self.closed and not self.paused:
            self.paused = True
            self._loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.paused:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
