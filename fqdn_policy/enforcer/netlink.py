"""The netlink framing nfnetlink messages share (NFLOG in nflogwire, nf_tables objects in nftcounter and
set elements in elementwire).

nlmsghdr (16 bytes, host order) | nfgenmsg (family u8, version u8, res_id big-endian u16)
| attributes (u16 length, u16 type, host order; 4-byte aligned; values big-endian)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # the top two bits are the nested and byte-order flags
NETLINK_CAP_ACK = 10  # socket option: an error's acknowledgement leaves out the refused message's body

NFNL_SUBSYS_NFTABLES = 10
NFPROTO_INET = 1

NLMSGHDR = struct.Struct("=IHHII")
NFGENMSG = struct.Struct("!BBH")
NLA = struct.Struct("=HH")


@dataclass(frozen=True, slots=True)
class NetlinkError:
    """An NLMSG_ERROR: errno 0 is the kernel's acknowledgement of a request."""

    errno: int
    seq: int


def align(n: int) -> int:
    return (n + 3) & ~3


def attribute(kind: int, value: bytes) -> bytes:
    raw = NLA.pack(NLA.size + len(value), kind) + value
    return raw + b"\0" * (align(len(raw)) - len(raw))


def nested(kind: int, value: bytes) -> bytes:
    """An attribute holding attributes (libmnl sets NLA_F_NESTED on every nest; so does this)."""
    return attribute(kind | NLA_F_NESTED, value)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def attributes(body: bytes, offset: int = NFGENMSG.size) -> dict[int, bytes]:
    """An attribute list (after the nfgenmsg header by default); a malformed tail is ignored."""
    out: dict[int, bytes] = {}
    while offset + NLA.size <= len(body):
        length, kind = NLA.unpack_from(body, offset)
        if length < NLA.size or offset + length > len(body):
            break
        out[kind & NLA_TYPE_MASK] = body[offset + NLA.size : offset + length]
        offset += align(length)
    return out


def messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, body) of every whole message in one datagram."""
    out = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            break
        out.append((kind, seq, data[offset + NLMSGHDR.size : offset + length]))
        offset += align(length)
    return out


def error_of(body: bytes, seq: int) -> NetlinkError | None:
    return NetlinkError(-struct.unpack_from("=i", body)[0], seq) if len(body) >= 4 else None
