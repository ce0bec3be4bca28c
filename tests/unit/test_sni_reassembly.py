"""One flow's first payload bytes in sequence order (fqdn_policy.sni.reassembly)."""

from fqdn_policy.sni.inspect import MAX_FIRST_BYTES
from fqdn_policy.sni.reassembly import MAX_SEGMENTS, FirstBytes


def test_consecutive_segments_join():
    flow = FirstBytes()
    assert flow.add(100, b"abc")
    assert flow.add(103, b"def")
    assert (flow.data, flow.segments) == (b"abcdef", 2)


def test_sequence_numbers_wrap_modulo_two_to_the_32():
    flow = FirstBytes()
    assert flow.add(2**32 - 2, b"ab")
    assert flow.add(0, b"cd")
    assert flow.add(2, b"e")
    assert flow.data == b"abcde"


def test_a_gap_is_refused_and_changes_nothing():
    flow = FirstBytes()
    flow.add(100, b"abc")
    assert not flow.add(104, b"e")
    assert (flow.data, flow.segments) == (b"abc", 1)


def test_a_segment_from_before_the_first_is_refused():
    flow = FirstBytes()
    flow.add(100, b"def")
    assert not flow.add(97, b"abc")
    assert not flow.add(99, b"cde")  # overlapping the start
    assert not flow.add(2**32 - 5, b"x")


def test_agreeing_retransmissions_are_accepted_and_ignored():
    flow = FirstBytes()
    flow.add(100, b"abc")
    flow.add(103, b"def")
    assert flow.add(100, b"abc")
    assert flow.add(101, b"bcde")
    assert flow.add(100, b"abcdef")
    assert (flow.data, flow.segments) == (b"abcdef", 2)


def test_a_retransmission_that_disagrees_is_refused():
    flow = FirstBytes()
    flow.add(100, b"abc")
    flow.add(103, b"def")
    assert not flow.add(101, b"Xc")
    assert not flow.add(103, b"deF")
    assert flow.data == b"abcdef"


def test_a_retransmission_that_overlaps_and_extends():
    flow = FirstBytes()
    flow.add(100, b"abc")
    assert flow.add(101, b"bcdef")
    assert (flow.data, flow.segments) == (b"abcdef", 2)
    assert not flow.add(104, b"eXg")  # the held part must agree, even with new bytes after it


def test_empty_payloads_are_ignored_and_do_not_anchor():
    flow = FirstBytes()
    assert flow.add(5, b"")
    assert flow.add(100, b"a")
    assert flow.add(7, b"")
    assert (flow.data, flow.segments) == (b"a", 1)


def test_a_segment_past_the_segment_bound_is_refused():
    flow = FirstBytes()
    for i in range(MAX_SEGMENTS):
        assert flow.add(i, b"x")
    assert not flow.add(MAX_SEGMENTS, b"x")
    assert flow.add(0, b"x")  # retransmissions still agree
    assert flow.segments == MAX_SEGMENTS


def test_bytes_past_the_inspection_bound_are_not_kept():
    flow = FirstBytes()
    assert flow.add(0, b"a" * (MAX_FIRST_BYTES - 10))
    assert flow.add(MAX_FIRST_BYTES - 10, b"b" * 100)
    assert len(flow.data) == MAX_FIRST_BYTES
    assert flow.add(MAX_FIRST_BYTES + 90, b"c" * 10)  # continues the stream, past what is kept
    assert not flow.add(MAX_FIRST_BYTES + 101, b"d")  # a gap is still a gap
    assert flow.add(MAX_FIRST_BYTES - 20, b"a" * 10 + b"b" * 10)
    assert not flow.add(MAX_FIRST_BYTES - 20, b"a" * 10 + b"X")
    assert len(flow.data) == MAX_FIRST_BYTES


def test_with_the_start_from_the_syn_a_later_segment_first_is_a_gap():
    flow = FirstBytes(start=2**32 + 100)  # taken modulo 2**32
    assert not flow.add(103, b"def")
    assert flow.add(100, b"abc")
    assert flow.add(103, b"def")
    assert flow.data == b"abcdef"


def test_without_the_start_the_first_segment_seen_anchors():
    flow = FirstBytes()
    assert flow.add(103, b"def")
    assert not flow.add(100, b"abc")
    assert flow.data == b"def"
