"""NFQUEUE messages: the bind, config and verdict requests against bytes laid out by hand from
linux/netfilter/nfnetlink_queue.h, and queued packets parsed from hand-built datagrams."""

import struct

import pytest

from fqdn_policy.enforcer.netlink import NetlinkError
from fqdn_policy.enforcer.nfqueuewire import (
    NF_ACCEPT,
    NF_DROP,
    NF_REPEAT,
    QueuedPacket,
    Verdict,
    bind_request,
    config_request,
    parse_datagram,
    verdict_message,
    verdict_messages,
)

QUEUE_CONFIG = (3 << 8) | 2  # NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG
QUEUE_VERDICT = (3 << 8) | 1
QUEUE_PACKET = (3 << 8) | 0
REQUEST, ACK = 0x1, 0x4


def _header(length: int, kind: int, flags: int, seq: int) -> bytes:
    return struct.pack("=IHHII", length, kind, flags, seq, 0)


def _nfgen(queue: int) -> bytes:
    return struct.pack("!BBH", 0, 0, queue)


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, body: bytes, seq: int = 0, flags: int = 0) -> bytes:
    return _header(16 + len(body), kind, flags, seq) + body


def test_bind_request_binds_and_sets_the_copy_mode_in_one_message():
    expected = (
        _header(16 + 4 + 8 + 12, QUEUE_CONFIG, REQUEST | ACK, 9)
        + struct.pack("!BBH", 0, 0, 300)
        # NFQA_CFG_CMD: command BIND, pad, pf 0
        + struct.pack("=HH", 8, 1)
        + bytes([1, 0, 0, 0])
        # NFQA_CFG_PARAMS: copy_range 512 (be32), copy_mode PACKET (u8), padded to 4
        + struct.pack("=HH", 9, 2)
        + struct.pack("!IB", 512, 2)
        + b"\0\0\0"
    )
    assert bind_request(300, 9, copy_range=512) == expected


def test_bind_request_copies_the_most_the_kernel_allows_by_default():
    params = bind_request(1, 1)[16 + 4 + 8 :]
    assert params[4:9] == struct.pack("!IB", 0xFFFF - 4, 2)


def test_config_request_sets_maxlen_gso_and_clears_fail_open():
    expected = _message(
        QUEUE_CONFIG,
        _nfgen(7)
        + _attr(3, struct.pack("!I", 2048))  # NFQA_CFG_QUEUE_MAXLEN
        + _attr(5, struct.pack("!I", 0x4))  # NFQA_CFG_FLAGS: F_GSO only
        + _attr(4, struct.pack("!I", 0x4 | 0x1)),  # NFQA_CFG_MASK: F_GSO and F_FAIL_OPEN change
        seq=3,
        flags=REQUEST | ACK,
    )
    assert config_request(7, 3, maxlen=2048) == expected


def test_verdict_without_a_mark():
    expected = _message(
        QUEUE_VERDICT, _nfgen(5) + _attr(2, struct.pack("!II", NF_ACCEPT, 0xDEADBEEF)), flags=REQUEST
    )
    assert verdict_message(5, 0xDEADBEEF, NF_ACCEPT) == expected


def test_verdict_with_a_mark_sets_it_big_endian():
    body = _nfgen(5) + _attr(2, struct.pack("!II", NF_REPEAT, 17)) + _attr(3, struct.pack("!I", 0x4))
    assert verdict_message(5, 17, NF_REPEAT, mark=0x4, seq=2) == _message(QUEUE_VERDICT, body, 2, REQUEST)
    assert body[-4:] == b"\x00\x00\x00\x04"


def test_a_mark_of_zero_is_still_sent():
    assert len(verdict_message(5, 17, NF_REPEAT, mark=0)) == len(verdict_message(5, 17, NF_REPEAT)) + 8


def test_several_verdicts_are_concatenated_messages():
    batch = verdict_messages(2, [Verdict(1, NF_ACCEPT), Verdict(2, NF_REPEAT, 0x8), Verdict(3, NF_DROP)])
    assert batch == (
        verdict_message(2, 1, NF_ACCEPT)
        + verdict_message(2, 2, NF_REPEAT, 0x8)
        + verdict_message(2, 3, NF_DROP)
    )


IP_PACKET = bytes.fromhex("450000340001400040060000") + bytes([10, 244, 1, 10, 198, 51, 100, 10]) + b"x" * 32


def _packet(queue: int, packet_id: int, *extra: bytes, payload: bytes = IP_PACKET) -> bytes:
    attrs = _attr(1, struct.pack("!IHB", packet_id, 0x0800, 2)) + b"".join(extra)
    return _message(QUEUE_PACKET, _nfgen(queue) + attrs + _attr(10, payload))


def test_a_datagram_with_two_packets_and_an_error():
    first = _packet(300, 1)
    second = _packet(300, 2, _attr(3, struct.pack("!I", 0x10)), _attr(13, struct.pack("!I", 9000)))
    refused = _message(2, struct.pack("=i", -2) + b"\0" * 16, seq=0)  # ENOENT for a verdict
    assert list(parse_datagram(first + refused + second)) == [
        QueuedPacket(300, 1, 0x0800, 2, 0, IP_PACKET, len(IP_PACKET)),
        NetlinkError(2, 0),
        QueuedPacket(300, 2, 0x0800, 2, 0x10, IP_PACKET, 9000),
    ]


def test_the_queue_number_comes_from_res_id_big_endian():
    (packet,) = parse_datagram(_packet(0x0102, 7))
    assert packet.queue == 0x0102


def test_a_packet_with_an_odd_payload_length_and_padding_parses():
    odd = IP_PACKET + b"abc"
    first, second = parse_datagram(_packet(1, 4, payload=odd) + _packet(1, 5))
    assert (first.payload, second.packet_id, second.payload) == (odd, 5, IP_PACKET)


def test_other_subsystems_and_headerless_packets_are_skipped():
    nflog = _message((4 << 8) | 0, _nfgen(1) + _attr(10, IP_PACKET))
    headerless = _message(QUEUE_PACKET, _nfgen(1) + _attr(10, IP_PACKET))
    short_header = _message(QUEUE_PACKET, _nfgen(1) + _attr(1, b"\0\0\0\1\x08"))
    no_nfgen = _message(QUEUE_PACKET, b"\0\0")
    assert list(parse_datagram(nflog + headerless + short_header + no_nfgen)) == []


WHOLE = _packet(300, 1, _attr(3, struct.pack("!I", 0x10))) + _message(
    2, struct.pack("=i", 0) + b"\0" * 16, seq=4
)


@pytest.mark.parametrize("cut", range(len(WHOLE)))
def test_truncated_input_never_raises(cut):
    parsed = list(parse_datagram(WHOLE[:cut]))
    assert parsed in ([], list(parse_datagram(WHOLE))[:1])


@pytest.mark.parametrize(
    "garbage", [b"\xff" * 64, b"\0" * 64, struct.pack("=IHHII", 16, QUEUE_PACKET, 0, 0, 0)]
)
def test_garbage_never_raises(garbage):
    list(parse_datagram(garbage))
