"""Raw IPv4/IPv6 packets to TCP segments (fqdn_policy.sni.segment), packets built by hand."""

import socket
import struct

import pytest

from fqdn_policy.sni.segment import ACK, PSH, Segment, flow_key, parse_segment

PAYLOAD = b"\x16\x03\x01\x00\x05hello"


def tcp(payload=PAYLOAD, sport=40000, dport=443, seq=0xFFFFFFF0, flags=PSH | ACK, options=b""):
    assert len(options) % 4 == 0
    offset = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq, 1, offset << 4, flags, 65535, 0, 0) + options + payload
    )


def ipv4(segment, src="10.244.1.10", dst="198.51.100.7", proto=6, options=b"", frag=0x4000, total=None):
    assert len(options) % 4 == 0
    header = 20 + len(options)
    total = header + len(segment) if total is None else total
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | header // 4,
            0,
            total,
            7,
            frag,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + options
        + segment
    )


def ipv6(body, next_header=6, src="2001:db8:244::10", dst="2001:db8:0:0:0:0:0:7", length=None):
    length = len(body) if length is None else length
    return (
        struct.pack("!IHBB", 0x60000000, length, next_header, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + body
    )


def options_header(next_header, units=0):
    """Hop-by-hop, routing or destination options: PadN filling (units + 1) * 8 octets."""
    pad = (units + 1) * 8 - 2
    return bytes([next_header, units]) + bytes([1, pad - 2]) + bytes(pad - 2)


def fragment_header(next_header, offset=0, more=False):
    return struct.pack("!BBHI", next_header, 0, offset << 3 | more, 0x1234)


def test_an_ipv4_segment():
    segment = parse_segment(ipv4(tcp()))
    assert segment == Segment("10.244.1.10", "198.51.100.7", 40000, 443, 0xFFFFFFF0, PSH | ACK, PAYLOAD)
    assert flow_key(segment) == ("10.244.1.10", "198.51.100.7", 40000, 443)


def test_ip_and_tcp_options_are_skipped():
    timestamps = b"\x01\x01\x08\x0a" + bytes(8)
    packet = ipv4(tcp(options=timestamps + b"\x01\x01\x04\x02"), options=b"\x94\x04\x00\x00")  # router alert
    assert parse_segment(packet).payload == PAYLOAD


def test_the_payload_ends_at_the_ip_total_length_not_the_buffer():
    assert parse_segment(ipv4(tcp()) + b"\x00" * 6).payload == PAYLOAD  # Ethernet padding
    assert parse_segment(ipv4(tcp(b"")) + b"\x00" * 6).payload == b""


def test_a_bytearray_packet_gives_bytes():
    assert type(parse_segment(bytearray(ipv4(tcp()))).payload) is bytes


@pytest.mark.parametrize("frag", [0x2000, 0x0001, 0x6000, 0x00B9])
def test_ipv4_fragments_are_none(frag):
    assert parse_segment(ipv4(tcp(), frag=frag)) is None


def test_ipv4_without_dont_fragment_is_read():
    assert parse_segment(ipv4(tcp(), frag=0)).payload == PAYLOAD


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x45",
        ipv4(tcp(), proto=17),
        ipv4(tcp(), total=19),
        ipv4(tcp(), total=39),  # shorter than its own TCP header
        ipv4(tcp(), total=len(ipv4(tcp())) + 1),  # longer than the buffer
        b"\x44" + ipv4(tcp())[1:],  # IHL 4
        b"\x50" + ipv4(tcp())[1:],  # version 5
    ],
)
def test_inconsistent_ipv4_is_none(packet):
    assert parse_segment(packet) is None


@pytest.mark.parametrize("offset", [0x40, 0x30, 0xF0])
def test_a_tcp_data_offset_past_the_segment_or_below_five_is_none(offset):
    segment = bytearray(tcp(b""))
    segment[12] = offset
    assert parse_segment(ipv4(bytes(segment))) is None


def test_every_truncation_is_none():
    for packet in (ipv4(tcp(options=bytes(4)), options=bytes(4)), ipv6(options_header(6) + tcp())):
        for cut in range(len(packet)):
            assert parse_segment(packet[:cut]) is None, cut


def test_an_ipv6_segment_with_compressed_addresses():
    segment = parse_segment(ipv6(tcp(dport=80)))
    assert (segment.src, segment.dst, segment.dport, segment.payload) == (
        "2001:db8:244::10",
        "2001:db8::7",
        80,
        PAYLOAD,
    )


def test_ipv6_extension_headers_are_walked():
    body = options_header(43, units=1) + options_header(60) + options_header(6, units=2) + tcp()
    assert parse_segment(ipv6(body, next_header=0)).payload == PAYLOAD


def test_an_atomic_ipv6_fragment_is_the_whole_packet():
    assert parse_segment(ipv6(fragment_header(6) + tcp(), next_header=44)).payload == PAYLOAD


@pytest.mark.parametrize(("offset", "more"), [(0, True), (3, False), (3, True)])
def test_ipv6_fragments_are_none(offset, more):
    assert parse_segment(ipv6(fragment_header(6, offset, more) + tcp(), next_header=44)) is None


@pytest.mark.parametrize("next_header", [17, 50, 51, 59, 58])
def test_ipv6_without_tcp_is_none(next_header):
    assert parse_segment(ipv6(tcp(), next_header=next_header)) is None


def test_ipv6_lengths_that_disagree_are_none():
    packet = ipv6(tcp())
    assert parse_segment(ipv6(tcp(), length=0)) is None  # a jumbogram
    assert parse_segment(ipv6(tcp(), length=len(tcp()) + 1)) is None
    assert parse_segment(packet + b"\x00" * 4).payload == PAYLOAD  # padding past the payload length
    assert parse_segment(ipv6(options_header(6, units=3) + tcp()[:10], next_header=0)) is None


def test_more_extension_headers_than_the_bound_are_none():
    nine = options_header(60) * 8 + options_header(6)
    assert parse_segment(ipv6(nine + tcp(), next_header=60)) is None
    eight = options_header(60) * 7 + options_header(6)
    assert parse_segment(ipv6(eight + tcp(), next_header=60)).payload == PAYLOAD
