"""A raw IPv4 or IPv6 packet, as an NFQUEUE hands it over, to the TCP segment it carries.

Anything this cannot vouch for is None, never an exception: a packet that is not TCP, is a fragment,
is cut short, or whose lengths disagree. The caller fails closed on None (it cannot see the name).
Lengths come from the headers, not from the buffer: bytes past the IP total length (link-layer padding)
are not payload.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

PROTO_TCP = 6
_HOP_BY_HOP = 0
_ROUTING = 43
_FRAGMENT = 44
_DESTINATION = 60
# Hop-by-hop, routing and destination options share one layout: next header, length in 8-octet units
# beyond the first 8. A fragment header is a fixed 8 octets.
_OPTION_HEADERS = frozenset((_HOP_BY_HOP, _ROUTING, _DESTINATION))
# RFC 8200 recommends each appear at most once (destination options twice); more than this is not a
# packet a pod sends, and the bound keeps the walk short whatever the bytes.
MAX_EXTENSION_HEADERS = 8

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset, flags (the rest is not needed)
_IPV4_MF = 0x2000
_IPV4_OFFSET = 0x1FFF


class Segment(NamedTuple):
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    flags: int  # the TCP flags octet: FIN, SYN, RST, PSH, ACK, URG, ECE, CWR
    payload: bytes


def flow_key(segment: Segment) -> tuple[str, str, int, int]:
    """The connection as seen from the client: (source, destination, source port, destination port)."""
    return (segment.src, segment.dst, segment.sport, segment.dport)


def parse_segment(packet: bytes) -> Segment | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        located = _ipv4(packet)
    elif version == 6:
        located = _ipv6(packet)
    else:
        return None
    if located is None:
        return None
    src, dst, start, end = located
    return _tcp(src, dst, bytes(packet[start:end]))


def _ipv4(packet: bytes) -> tuple[str, str, int, int] | None:
    """(source, destination, start and end of the IP payload) of an unfragmented TCP packet."""
    if len(packet) < _IPV4.size:
        return None
    ver_ihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(packet)
    header = (ver_ihl & 0x0F) * 4
    if header < _IPV4.size or total < header or total > len(packet):
        return None
    if frag & (_IPV4_MF | _IPV4_OFFSET):  # a fragment: the first lacks the rest, a later one the header
        return None
    if proto != PROTO_TCP:
        return None
    return str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst)), header, total


def _ipv6(packet: bytes) -> tuple[str, str, int, int] | None:
    """(source, destination, start and end of the TCP header and data) after the extension headers."""
    if len(packet) < _IPV6.size:
        return None
    _vtcfl, payload_length, next_header, _hops, src, dst = _IPV6.unpack_from(packet)
    end = _IPV6.size + payload_length
    if payload_length == 0 or end > len(packet):  # zero: a jumbogram (RFC 2675), never on a pod's link
        return None
    offset = _IPV6.size
    for _ in range(MAX_EXTENSION_HEADERS + 1):
        if next_header == PROTO_TCP:
            return str(ipaddress.IPv6Address(src)), str(ipaddress.IPv6Address(dst)), offset, end
        if offset + 8 > end:
            return None
        if next_header in _OPTION_HEADERS:
            following, length = packet[offset], (packet[offset + 1] + 1) * 8
        elif next_header == _FRAGMENT:
            (offset_and_flags,) = struct.unpack_from("!H", packet, offset + 2)
            if offset_and_flags & 0xFFF9:  # a fragment offset, or more fragments: not whole here
                return None
            following, length = packet[offset], 8  # an atomic fragment (RFC 6946) is the whole packet
        else:
            return None  # ESP, AH, no next header, or another protocol
        if offset + length > end:
            return None
        next_header, offset = following, offset + length
    return None


def _tcp(src: str, dst: str, data: bytes) -> Segment | None:
    if len(data) < 20:
        return None
    sport, dport, seq, _ack, data_offset, flags = _TCP.unpack_from(data)
    header = (data_offset >> 4) * 4
    if header < 20 or header > len(data):
        return None
    return Segment(src, dst, sport, dport, seq, flags, data[header:])
