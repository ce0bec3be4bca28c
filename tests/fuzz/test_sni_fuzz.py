"""Fuzzing the first-bytes inspection (fqdn_policy.sni): arbitrary bytes and mutated real ClientHellos
and HTTP requests never raise, always give a well-formed Inspection, and where the bytes are cut never
changes a decision (a prefix is NEED_MORE or decided as the whole is). Hypothesis explores; a seeded
run of the DNS harness's byte mutator (tests/fuzz/harness.py) adds volume cheaply."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fqdn_policy.sni.inspect import DONE, MAX_FIRST_BYTES, NEED_MORE, Inspection, inspect_first_bytes
from fqdn_policy.sni.reassembly import FirstBytes
from fqdn_policy.sni.segment import parse_segment
from tests.fuzz.harness import mutate
from tests.fuzz.sni_seeds import seeds

SEEDS = seeds()
PORTS = st.sampled_from([80, 443, 8443])


def checked(data: bytes, port: int, cuts=()) -> Inspection:
    """The inspection of `data`, after checking its shape and that the prefixes at `cuts` agree."""
    whole = inspect_first_bytes(data, port)
    assert isinstance(whole, Inspection)
    assert whole.kind in ("tls", "http", "other")
    if whole.state is DONE:
        assert whole.wanted is None
        assert (whole.name is None) == (whole.reason is not None)
        assert whole.kind != "other" or whole.name is None
        if whole.name is not None:
            assert whole.name == whole.name.lower() and not whole.name.endswith(".") and whole.name
    else:
        assert whole.state is NEED_MORE and whole.name is None and whole.reason is None
        assert whole.wanted is None or whole.wanted > len(data)
        assert len(data) < MAX_FIRST_BYTES
    for cut in cuts:
        prefix = inspect_first_bytes(data[:cut], port)
        assert prefix.state is NEED_MORE or prefix == whole, (cut, prefix, whole)
    return whole


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600), PORTS, st.lists(st.integers(0, 600), max_size=4))
def test_arbitrary_bytes(data, port, cuts):
    checked(data, port, cuts)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["\x16\x03\x01", "\x16\x03\x03\x02\x00\x01", "GET / HTTP/1.1\r\n", "PRI "]), st.binary()
)
def test_arbitrary_bytes_after_a_plausible_start(start, rest):
    data = start.encode("latin-1") + rest
    for port in (80, 443):
        checked(data, port, range(0, len(data), 3))


@settings(max_examples=1500, deadline=None)
@given(
    st.integers(0, len(SEEDS) - 1),
    st.lists(st.tuples(st.integers(0, 20000), st.binary(min_size=1, max_size=6)), min_size=1, max_size=3),
    st.lists(st.integers(0, 20000), max_size=4),
)
def test_mutated_real_first_bytes(index, edits, cuts):
    data, port = SEEDS[index]
    buf = bytearray(data)
    for position, junk in edits:
        position %= len(buf)
        buf[position : position + len(junk)] = junk
    checked(bytes(buf), port, [cut % (len(buf) + 1) for cut in cuts])


def test_unmutated_seeds_present_a_name_from_every_prefix_on():
    for data, port in SEEDS:
        whole = checked(data, port, range(len(data) + 1))
        assert whole.state is DONE
    assert [checked(d, p).name for d, p in SEEDS].count(None) == 1  # the ClientHello without server_name


def test_twenty_thousand_seeded_mutations():
    rng = random.Random(20)
    decided = 0
    for _ in range(20_000):
        data, port = rng.choice(SEEDS)
        other, _ = rng.choice(SEEDS)
        mutated = mutate(rng, data, other)[: 2 * MAX_FIRST_BYTES]
        whole = checked(mutated, port, [rng.randrange(len(mutated) + 1) for _ in range(2)])
        decided += whole.name is not None
    assert decided > 1000  # the mutations reach names, not just early refusals


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, len(SEEDS) - 1),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 700)), min_size=1, max_size=12),
    st.integers(0, 2**32 - 1),
)
def test_reassembly_only_ever_holds_a_prefix_of_the_stream(index, pieces, isn):
    """Segments at any offsets, reordered, overlapping or repeated, the start known from the SYN: what is
    held is the stream's start, and its inspection is a prefix's (NEED_MORE or the whole's decision)."""
    stream, port = SEEDS[index]
    whole = inspect_first_bytes(stream, port)
    flow = FirstBytes(start=isn)
    for offset, size in pieces:
        offset %= len(stream)
        flow.add((isn + offset) % 2**32, stream[offset : offset + size])
        assert stream.startswith(flow.data)
        held = inspect_first_bytes(flow.data, port)
        assert held.state is NEED_MORE or held == whole


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 700)), min_size=1, max_size=12))
def test_reassembly_without_the_start_holds_a_slice_from_the_first_segment_seen(pieces):
    stream = SEEDS[0][0]
    flow = FirstBytes()
    anchor = None
    for offset, size in pieces:
        offset %= len(stream)
        piece = stream[offset : offset + size]
        flow.add(offset, piece)
        if anchor is None and piece:
            anchor = offset
        if anchor is not None:
            assert stream[anchor:].startswith(flow.data)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_packets(packet):
    segment = parse_segment(packet)
    assert segment is None or len(segment.payload) < len(packet)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([b"\x45", b"\x46", b"\x4f", b"\x60"]), st.binary(max_size=120))
def test_arbitrary_packets_with_a_plausible_version(first, rest):
    segment = parse_segment(first + rest)
    assert segment is None or (0 <= segment.sport < 65536 and isinstance(segment.payload, bytes))
