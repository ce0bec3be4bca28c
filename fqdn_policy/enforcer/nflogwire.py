"""nfnetlink_log (NFLOG) messages: build the bind request, parse logged packets. Pure: bytes in, events out.

No maintained Python library fits: pyroute2 (0.9) speaks nfnetlink for conntrack, ipset, nftables and
NFQUEUE but not NFLOG; `nflog` (PyPI) was last released in 2016; `nflogr` is a C extension over
libnetfilter_log. The protocol is small (linux/netfilter/nfnetlink_log.h), so it is parsed here, on the
framing in fqdn_policy.enforcer.netlink (the nfgenmsg res_id is the group).

Of a logged packet only the prefix (NFULA_PREFIX) and the packet from its network header (NFULA_PAYLOAD)
are read: the addresses, the protocol and the destination port are all the agent needs.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from fqdn_policy.enforcer.netlink import (
    NFGENMSG,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NetlinkError,
    attribute,
    attributes,
    error_of,
    message,
    messages,
)

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1

NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2

NFULA_PAYLOAD = 9
NFULA_PREFIX = 10

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
_PORTED = {6, 17, 132}  # protocols whose destination port is the second 16-bit field of the header


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    """One packet the kernel logged to the group."""

    prefix: str
    source: str
    destination: str
    protocol: str  # tcp, udp, sctp, icmp, icmpv6, or the IP protocol number as text
    source_port: int | None
    port: int | None  # destination port, for TCP, UDP and SCTP
    # The copied bytes from the network header on (at most the rule's snaplen): what verify-sni reads a
    # SYN's sequence number from. Not part of the packet's identity for comparisons.
    packet: bytes = field(default=b"", compare=False, repr=False)


def bind_request(group: int, seq: int, copy_range: int = 128) -> bytes:
    """NFULNL_MSG_CONFIG: bind this socket to `group`, copying the first `copy_range` bytes of each packet.

    The kernel lets one socket per network namespace bind a group: another socket's bind fails with
    EPERM (nfnetlink_log.c, nfulnl_recv_config), and the binding goes away when its socket closes.
    """
    body = NFGENMSG.pack(0, 0, group)
    body += attribute(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND))
    body += attribute(NFULA_CFG_MODE, struct.pack("!IBx", copy_range, NFULNL_COPY_PACKET))
    # Deliver each packet at once instead of batching for up to the default flush timeout (1 s).
    body += attribute(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
    body += attribute(NFULA_CFG_TIMEOUT, struct.pack("!I", 1))
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return message(kind, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def parse_datagram(data: bytes) -> Iterator[LoggedPacket | NetlinkError]:
    """Every message in one netlink datagram; anything malformed or of another kind is skipped."""
    for kind, seq, body in messages(data):
        if kind == NLMSG_ERROR:
            error = error_of(body, seq)
            if error is not None:
                yield error
        elif kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            packet = _packet(body)
            if packet is not None:
                yield packet


def _packet(body: bytes) -> LoggedPacket | None:
    attrs = attributes(body)
    payload = attrs.get(NFULA_PAYLOAD)
    if not payload:
        return None
    prefix = attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode("ascii", "replace")
    headers = parse_ip(payload)
    if headers is None:
        return None
    source, destination, proto, source_port, port = headers
    return LoggedPacket(
        prefix, source, destination, PROTOCOLS.get(proto, str(proto)), source_port, port, bytes(payload)
    )


def parse_ip(packet: bytes) -> tuple[str, str, int, int | None, int | None] | None:
    """(source, destination, IP protocol, source port, destination port) of an IPv4 or IPv6 packet.

    IPv6 extension headers are not walked: a packet behind one reports its next-header value and no
    port (a rare case for a connection attempt; the drop is still attributed by address).
    """
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        header_len = (packet[0] & 0x0F) * 4
        proto = packet[9]
        source = str(ipaddress.IPv4Address(packet[12:16]))
        destination = str(ipaddress.IPv4Address(packet[16:20]))
        fragment_offset = struct.unpack_from("!H", packet, 6)[0] & 0x1FFF
        l4 = packet[header_len:] if fragment_offset == 0 else b""
    elif version == 6 and len(packet) >= 40:
        proto = packet[6]
        source = ipaddress.IPv6Address(packet[8:24]).compressed
        destination = ipaddress.IPv6Address(packet[24:40]).compressed
        l4 = packet[40:]
    else:
        return None
    if proto in _PORTED and len(l4) >= 4:
        source_port, port = struct.unpack_from("!HH", l4)
        return source, destination, proto, source_port, port
    return source, destination, proto, None, None
