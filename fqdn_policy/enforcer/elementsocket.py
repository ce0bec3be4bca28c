"""The NETLINK_NETFILTER socket the allow-set element batches go over (encoding: elementwire).

One socket, kept open. The kernel handles a batch inside the send() call (nfnetlink_rcv_batch runs in
the sender's context), so every acknowledgement is queued by the time send() returns: the answers are
read without waiting, and the poll with a timeout only guards against a kernel that behaved otherwise.
"""

from __future__ import annotations

import errno
import select
import socket
from collections.abc import Sequence

from fqdn_policy.enforcer.elementwire import Acknowledgements, ElementChange, ElementRefused, encode_batch
from fqdn_policy.enforcer.netlink import NETLINK_CAP_ACK, NETLINK_NETFILTER
from fqdn_policy.enforcer.refresh import Refresh

SOL_NETLINK = 270
ANSWER_TIMEOUT = 1.0  # seconds
# Buffer sizes asked for with the *FORCE options (the agent has CAP_NET_ADMIN; the kernel doubles the
# value). A send larger than the send buffer fails with EMSGSIZE, so it grows with the batch (5,000
# elements are ~0.5 MB); each acknowledgement takes well under 2 KB of receive buffer.
SEND_BUFFER = 1 << 20
RECEIVE_BUFFER = 1 << 20
ACK_SPACE = 2048


class ElementSocket:
    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 1
        self._send_space = 0
        self._receive_space = 0
        self._buffer = bytearray(65536)

    def write(self, changes: Sequence[ElementChange], refresh: Refresh = Refresh.UPDATE) -> None:
        """Apply the changes as one transaction; returns once the kernel acknowledged every message.
        `refresh`: how an element that exists gets its new timeout (fqdn_policy.enforcer.refresh).

        Raises ValueError for an element that cannot be encoded (nothing sent), ElementRefused when the
        kernel refused (nothing applied), OSError when the socket failed (the socket is then replaced
        on the next call; whether the batch was applied is unknown, so the caller fails it)."""
        batch = encode_batch(changes, self._seq, refresh)
        self._seq = batch.next_seq & 0x7FFFFFFF or 1
        if not batch.targets:
            return
        sock = self._open()
        try:
            self._make_room(sock, len(batch.data), len(batch.targets))
            sock.send(batch.data)
            answers = Acknowledgements.of(batch)
            while not answers.complete:
                answers.feed(self._receive(sock))
        except OSError as error:
            if not isinstance(error, ElementRefused):
                self.close()
            raise
        refused = answers.outcome()
        if refused is not None:
            raise refused

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _open(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            try:
                sock.bind((0, 0))
                sock.setblocking(False)
                # An error's answer would otherwise carry the refused message whole (up to 64 KB).
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            except OSError:
                sock.close()
                raise
            self._sock = sock
            self._send_space = self._receive_space = 0
        return self._sock

    def _make_room(self, sock: socket.socket, size: int, answers: int) -> None:
        if size + 64 > self._send_space:
            self._send_space = _grow(sock, socket.SO_SNDBUF, max(SEND_BUFFER, 2 * size))
        if answers * ACK_SPACE > self._receive_space:
            self._receive_space = _grow(sock, socket.SO_RCVBUF, max(RECEIVE_BUFFER, 2 * answers * ACK_SPACE))

    def _receive(self, sock: socket.socket) -> bytes:
        while True:
            try:
                size = sock.recv_into(self._buffer)
                return bytes(self._buffer[:size])
            except BlockingIOError:
                ready = select.select([sock], [], [], ANSWER_TIMEOUT)[0]
                if not ready:
                    raise OSError(errno.ETIMEDOUT, "nf_tables did not answer an element batch") from None


def _grow(sock: socket.socket, option: int, size: int) -> int:
    """Set a buffer size, as root past the system's maximum; the size the kernel granted."""
    force = {socket.SO_SNDBUF: 32, socket.SO_RCVBUF: 33}[option]  # SO_SNDBUFFORCE, SO_RCVBUFFORCE
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
    return sock.getsockopt(socket.SOL_SOCKET, option)
