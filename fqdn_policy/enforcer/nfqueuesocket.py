"""The netlink socket that reads the packets a chain queues to an NFQUEUE queue and gives their verdicts
(messages: nfqueuewire).

Each queued packet waits in the kernel until its verdict arrives; the socket is non-blocking once
bound, so an asyncio reader drains it when readable (loop.add_reader on fileno()) and answers in the
same turn. A packet the kernel could not deliver because the receive buffer was full is dropped by the
kernel (the queue is fail-closed) and reported here as ENOBUFS, counted in `overflows`.
"""

from __future__ import annotations

import errno
import itertools
import socket
from collections.abc import Iterable

from fqdn_policy.enforcer.netlink import NETLINK_NETFILTER
from fqdn_policy.enforcer.nfqueuewire import (
    DEFAULT_QUEUE_MAXLEN,
    MAX_COPY_RANGE,
    QueuedPacket,
    Verdict,
    bind_request,
    config_request,
    parse_datagram,
    verdict_message,
    verdict_messages,
)

# Room for a few hundred whole first packets; SO_RCVBUFFORCE (CAP_NET_ADMIN, which the agent has)
# passes net.core.rmem_max, which is 208 KiB by default: three packets of the largest copy range.
RECEIVE_BUFFER = 8 << 20
# One datagram holds one queued packet: its payload (at most MAX_COPY_RANGE) and some attributes.
RECEIVE_SIZE = 1 << 17
ACK_TIMEOUT = 1.0
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; Python's socket module does not name it
VERDICTS_PER_SEND = 1024  # 40 bytes each: a send stays far below the socket's send buffer


class QueueBusy(OSError):
    """Another socket in this network namespace has the queue (say, the agent this one replaces)."""


class NfqueueSocket:
    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.overflows = 0  # times the kernel found the receive buffer full (those packets dropped)
        self.refused = 0  # verdicts the kernel refused, e.g. for a packet id it no longer held
        self._seq = itertools.count(1)
        self._early: list[QueuedPacket] = []
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            _grow_receive_buffer(self._sock)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def bind(self, copy_range: int = MAX_COPY_RANGE, maxlen: int = DEFAULT_QUEUE_MAXLEN) -> None:
        """Bind the queue and configure it; QueueBusy if another socket holds it, OSError otherwise.

        No PF_BIND first: nfqnl_recv_config answers it with 0 and does nothing ("obsolete commands
        without queue context"), so only very old kernels needed it."""
        self._sock.settimeout(ACK_TIMEOUT)
        try:
            seq = next(self._seq)
            error = self._request(bind_request(self.queue, seq, copy_range), seq)
            # A queue bound by another socket answers EPERM (the owner's port id is checked before
            # the command); EBUSY is this socket binding it twice.
            if error in (errno.EPERM, errno.EBUSY):
                raise QueueBusy(errno.EBUSY, f"NFQUEUE queue {self.queue} is bound by another socket")
            if error:
                raise OSError(error, f"binding NFQUEUE queue {self.queue} failed (nfnetlink_queue)")
            seq = next(self._seq)
            error = self._request(config_request(self.queue, seq, maxlen), seq)
            if error:
                raise OSError(error, f"configuring NFQUEUE queue {self.queue} failed")
        finally:
            self._sock.setblocking(False)

    def _request(self, request: bytes, seq: int) -> int:
        """Send one acknowledged request; the errno of its answer (0: done). A packet queued before
        the answer (between the bind and the config) is kept for receive(): the kernel holds it until
        it gets a verdict."""
        self._sock.send(request)
        while True:
            for message in parse_datagram(self._sock.recv(RECEIVE_SIZE)):
                if isinstance(message, QueuedPacket):
                    self._early.append(message)
                elif message.seq == seq:
                    return message.errno

    def receive(self) -> list[QueuedPacket]:
        """Every packet waiting on the socket, without blocking (call when it is readable)."""
        packets, self._early = self._early, []
        while True:
            try:
                data = self._sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                return packets
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    self.overflows += 1
                    continue
                raise
            for message in parse_datagram(data):
                if isinstance(message, QueuedPacket):
                    packets.append(message)
                elif message.errno:
                    self.refused += 1

    def verdict(self, packet_id: int, verdict: int, mark: int | None = None) -> None:
        self._sock.send(verdict_message(self.queue, packet_id, verdict, mark))

    def verdicts(self, verdicts: Iterable[Verdict]) -> None:
        """Several verdicts in as few sends as possible (one per VERDICTS_PER_SEND)."""
        pending = list(verdicts)
        for start in range(0, len(pending), VERDICTS_PER_SEND):
            self._sock.send(verdict_messages(self.queue, pending[start : start + VERDICTS_PER_SEND]))

    def close(self) -> None:
        """Close the socket: the kernel unbinds the queue and drops the packets it still holds."""
        self._sock.close()


def _grow_receive_buffer(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
