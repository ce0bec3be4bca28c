"""NFLOG messages: the bind request and logged packets, from bytes captured on Linux 6.18 and built."""

import struct

import pytest

from fqdn_policy.enforcer.nflogwire import (
    LoggedPacket,
    NetlinkError,
    bind_request,
    parse_datagram,
    parse_ip,
)

# Captured: `log group 4053 prefix "..." snaplen 96` on a TCP SYN 10.244.1.10 -> 198.51.100.20:443,
# then on one 2001:db8:244::10 -> 2001:db8:100::20:443 (read from the socket as one datagram each).
CAPTURED_V4 = bytes.fromhex(
    "8c00000000040000000000000000000002000fd5080001000800030018000a006671646e2d706f6c69637920656e666f"
    "72636500080005000000000108000b000000000008000e0000000000400009004500003c833840004006813e0af4010a"
    "c63364148d9601bb47f50de800000000a002ffd7367400000204ffd70402080a08afdda5000000000103030a"
)
CAPTURED_V6 = bytes.fromhex(
    "a00000000004000000000000000000000a000fd50800010086dd030016000a006671646e2d706f6c6963792061756469"
    "74000000080005000000000108000b000000000008000e000000000054000900600ffaf90028064020010db802440000"
    "000000000000001020010db8010000000000000000000020949801bb7c10eebd00000000a002ffc45f1400000204ffc4"
    "0402080a81aa5363000000000103030a"
)


def test_captured_ipv4_syn():
    assert list(parse_datagram(CAPTURED_V4)) == [
        LoggedPacket("fqdn-policy enforce", "10.244.1.10", "198.51.100.20", "tcp", 36246, 443)
    ]


def test_captured_ipv6_syn():
    assert list(parse_datagram(CAPTURED_V6)) == [
        LoggedPacket("fqdn-policy audit", "2001:db8:244::10", "2001:db8:100::20", "tcp", 38040, 443)
    ]


def test_several_messages_in_one_datagram():
    assert len(list(parse_datagram(CAPTURED_V4 + CAPTURED_V6))) == 2


@pytest.mark.parametrize("cut", [0, 3, 15, 16, 40, len(CAPTURED_V4) - 1])
def test_truncated_datagrams_are_skipped_not_raised(cut):
    assert list(parse_datagram(CAPTURED_V4[:cut])) == []


def _message(kind: int, body: bytes, seq: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body


def test_ack_and_error():
    ack = _message(2, struct.pack("=i", 0) + b"\0" * 16, seq=7)
    busy = _message(2, struct.pack("=i", -1) + b"\0" * 16, seq=8)
    assert list(parse_datagram(ack + busy)) == [NetlinkError(0, 7), NetlinkError(1, 8)]


def test_other_message_kinds_are_ignored():
    assert list(parse_datagram(_message(0x0401, b"\0" * 4))) == []


def test_bind_request_layout():
    request = bind_request(4053, seq=5, copy_range=96)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert length == len(request) and kind == 0x0401 and flags == 0x5 and seq == 5
    assert struct.unpack_from("!BBH", request, 16) == (0, 0, 4053)
    # NFULA_CFG_CMD = BIND, NFULA_CFG_MODE = copy 96 bytes of the packet
    assert request[20:25] == struct.pack("=HHB", 5, 1, 1)
    assert request[28:38] == struct.pack("=HH", 10, 2) + struct.pack("!IB", 96, 2) + b"\0"


def _ipv4(proto: int, l4: bytes, fragment: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, fragment, 64, proto, 0,
        bytes([10, 244, 1, 10]), bytes([198, 51, 100, 20]),
    )  # fmt: skip
    return header + l4


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (_ipv4(17, struct.pack("!HH", 5000, 53)), ("10.244.1.10", "198.51.100.20", 17, 5000, 53)),
        (_ipv4(132, struct.pack("!HH", 1, 2)), ("10.244.1.10", "198.51.100.20", 132, 1, 2)),
        (_ipv4(1, b"\x08\0\0\0"), ("10.244.1.10", "198.51.100.20", 1, None, None)),
        (_ipv4(6, b"\0\x01"), ("10.244.1.10", "198.51.100.20", 6, None, None)),  # header cut short
        (_ipv4(6, struct.pack("!HH", 1, 2), fragment=100), ("10.244.1.10", "198.51.100.20", 6, None, None)),
        (b"\x45" + b"\0" * 10, None),
        (b"\x70" + b"\0" * 60, None),
        (b"", None),
    ],
)
def test_parse_ip(packet, expected):
    assert parse_ip(packet) == expected


def test_the_copied_packet_is_kept_for_what_reads_tcp_headers():
    """verify-sni reads a logged SYN's sequence number from the copy (fqdn_policy.agent.snicheck)."""
    from fqdn_policy.sni.segment import SYN, parse_segment

    (logged,) = parse_datagram(CAPTURED_V4)
    segment = parse_segment(logged.packet)
    assert segment is not None and segment.flags & SYN and not segment.payload
    assert (segment.src, segment.dst, segment.sport, segment.dport) == (
        "10.244.1.10",
        "198.51.100.20",
        36246,
        443,
    )
