"""The netlink socket that receives the packets the chains log to an NFLOG group (parsing: nflogwire)."""

from __future__ import annotations

import errno
import itertools
import socket

from fqdn_policy.enforcer.netlink import NETLINK_NETFILTER, NetlinkError
from fqdn_policy.enforcer.nflogwire import LoggedPacket, bind_request, parse_datagram

RECEIVE_BUFFER = 1 << 20  # bytes; at the default log rate the kernel never fills it between two reads
ACK_TIMEOUT = 1.0


class GroupBusy(OSError):
    """Another socket in this network namespace has the group (say, the agent this one replaces)."""


class NflogSocket:
    def __init__(self, group: int) -> None:
        self.group = group
        self.overflows = 0  # times the kernel found the receive buffer full (messages lost)
        self._seq = itertools.count(1)
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def bind(self) -> None:
        """Bind the group; raises GroupBusy if another socket holds it, OSError otherwise."""
        seq = next(self._seq)
        self._sock.settimeout(ACK_TIMEOUT)
        try:
            self._sock.send(bind_request(self.group, seq))
            while True:
                for message in parse_datagram(self._sock.recv(65536)):
                    if isinstance(message, NetlinkError) and message.seq == seq:
                        # A group bound by another socket answers EPERM (nfulnl_recv_config checks
                        # the owner's port id before the command; EBUSY is for a re-bind).
                        if message.errno in (errno.EPERM, errno.EBUSY):
                            busy = f"NFLOG group {self.group} is bound by another socket"
                            raise GroupBusy(errno.EBUSY, busy)
                        if message.errno:
                            raise OSError(message.errno, f"binding NFLOG group {self.group} failed")
                        return
        finally:
            self._sock.setblocking(False)

    def read(self) -> list[LoggedPacket]:
        """Every packet waiting on the socket (call when it is readable)."""
        packets: list[LoggedPacket] = []
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return packets
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    self.overflows += 1
                    continue
                raise
            packets += (m for m in parse_datagram(data) if isinstance(m, LoggedPacket))

    def close(self) -> None:
        self._sock.close()
