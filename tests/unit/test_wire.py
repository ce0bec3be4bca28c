"""The hand parser against dnslib: same question, same addresses, never a crash."""

import contextlib
import struct

import pytest
from dnslib import AAAA, CNAME, MX, QTYPE, RR, A, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from fqdn_policy.dnsproxy.codes import RCODE_SERVFAIL
from fqdn_policy.dnsproxy.wire import (
    WireError,
    _printable_name,
    error_response,
    formerr_for,
    parse_answer,
    parse_query,
    with_id,
)


def query(name="www.google.com", qtype="A"):
    return DNSRecord.question(name, qtype)


def reply_for(q, *rrs, rcode=0, tc=False):
    r = q.reply()
    for rr in rrs:
        r.add_answer(rr)
    r.header.rcode = rcode
    r.header.tc = int(tc)
    return r


def test_query_fields():
    q = query("WWW.Google.com", "AAAA")
    parsed = parse_query(q.pack())
    assert parsed.id == q.header.id
    assert parsed.qname == "www.google.com"
    assert parsed.qtype == 28
    assert parsed.qname_text == "WWW.Google.com"


def test_answer_addresses_follow_the_cname_chain_only():
    q = query("alias.example.com")
    r = reply_for(
        q,
        RR("alias.example.com", QTYPE.CNAME, rdata=CNAME("www.google.com"), ttl=60),
        RR("www.google.com", QTYPE.A, rdata=A("198.51.100.10"), ttl=300),
        RR("www.google.com", QTYPE.AAAA, rdata=AAAA("2001:db8:100::10"), ttl=200),
        RR("unrelated.example.net", QTYPE.A, rdata=A("203.0.113.66"), ttl=300),
    )
    parsed = parse_answer(r.pack(), parse_query(q.pack()).question)
    assert parsed.addresses == ((4, "198.51.100.10", 300), (6, "2001:db8:100::10", 200))


def test_answer_must_repeat_the_question():
    q = query("www.google.com")
    other = reply_for(query("www.cloudflare.com"), RR("www.cloudflare.com", rdata=A("198.51.100.20")))
    with pytest.raises(WireError, match="another question"):
        parse_answer(other.pack(), parse_query(q.pack()).question)


def test_answer_question_case_may_differ():
    q = query("www.google.com")
    r = reply_for(query("WWW.GOOGLE.COM"), RR("WWW.GOOGLE.COM", rdata=A("198.51.100.10")))
    assert parse_answer(r.pack(), parse_query(q.pack()).question).addresses == ((4, "198.51.100.10", 0),)


def test_other_types_and_errors_carry_no_addresses():
    q = query("mail.example.com", "MX")
    r = reply_for(q, RR("mail.example.com", QTYPE.MX, rdata=MX("mx.example.com")))
    assert parse_answer(r.pack(), parse_query(q.pack()).question).addresses == ()
    nx = reply_for(query(), rcode=3)
    answer = parse_answer(nx.pack(), parse_query(query().pack()).question)
    assert answer.rcode == 3 and answer.addresses == ()


def test_a_query_cannot_pose_as_an_answer():
    q = query()
    with pytest.raises(WireError, match="a query"):
        parse_answer(q.pack(), parse_query(q.pack()).question)


@pytest.mark.parametrize(
    "labels",
    [[b"www", b"google.com"], [b"www", b"goo gle", b"com"], [b"www\x00", b"google", b"com"]],
)
def test_odd_labels_are_unmatchable(labels):
    wire = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    wire += b"".join(bytes([len(label)]) + label for label in labels) + b"\x00" + struct.pack("!HH", 1, 1)
    assert parse_query(wire).qname is None


def test_compression_loops_are_refused():
    q = query("a.example.com")
    wire = bytearray(reply_for(q).pack())
    wire[7] = 1  # ancount = 1
    # owner name is a pointer to itself
    here = len(wire)
    wire += struct.pack("!H", 0xC000 | here) + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4)
    with pytest.raises(WireError):
        parse_answer(bytes(wire), parse_query(q.pack()).question)


def test_servfail_and_formerr():
    q = parse_query(query().pack())
    servfail = DNSRecord.parse(error_response(q, RCODE_SERVFAIL))
    assert servfail.header.rcode == RCODE_SERVFAIL and servfail.header.id == q.id
    assert str(servfail.q.qname) == "www.google.com."
    assert formerr_for(b"\x12\x34" + b"\x01\x00" + b"\x00" * 8)[:2] == b"\x12\x34"
    assert formerr_for(b"short") is None
    assert formerr_for(reply_for(query()).pack()) is None  # never answer a response


def test_with_id():
    assert with_id(b"\x00\x01rest", 0xABCD) == b"\xab\xcdrest"


names = st.lists(st.from_regex(r"[a-zA-Z0-9-]{1,20}", fullmatch=True), min_size=1, max_size=4).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))


@settings(max_examples=200, deadline=None)
@given(
    qname=names,
    target=names,
    v4=st.lists(ipv4, max_size=5),
    ttl=st.integers(0, 2**31 - 1),
    cname=st.booleans(),
)
def test_matches_dnslib(qname, target, v4, ttl, cname):
    q = query(qname)
    owner = target if cname else qname
    rrs = [RR(qname, QTYPE.CNAME, rdata=CNAME(target), ttl=ttl)] if cname else []
    rrs += [RR(owner, QTYPE.A, rdata=A(a), ttl=ttl) for a in v4]
    wire = reply_for(q, *rrs).pack()
    parsed = parse_answer(wire, parse_query(q.pack()).question)
    reference = DNSRecord.parse(wire)
    expected = tuple((4, str(rr.rdata), rr.ttl) for rr in reference.rr if rr.rtype == QTYPE.A)
    assert parsed.addresses == expected


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data):
    try:
        q = parse_query(data)
    except WireError:
        return
    with contextlib.suppress(WireError):
        parse_answer(data, q.question)


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 300), st.binary(min_size=1, max_size=8))
def test_mutated_answers_never_crash(position, junk):
    q = query("alias.example.com")
    wire = bytearray(
        reply_for(
            q,
            RR("alias.example.com", QTYPE.CNAME, rdata=CNAME("www.google.com"), ttl=60),
            RR("www.google.com", QTYPE.A, rdata=A("198.51.100.10"), ttl=300),
        ).pack()
    )
    position %= len(wire)
    wire[position : position + len(junk)] = junk
    with contextlib.suppress(WireError):
        parse_answer(bytes(wire), parse_query(q.pack()).question)


@given(st.lists(st.binary(min_size=1, max_size=12), min_size=0, max_size=5))
def test_qname_text_shortcut_agrees_with_the_full_rendering(labels):
    """The lower-case hostname shortcut gives exactly what rendering the labels gives."""
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    data = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    parsed = parse_query(data)
    assert parsed.qname_text == _printable_name(parsed.question)


def test_qname_text_keeps_the_clients_spelling():
    assert parse_query(query("www.example.com").pack()).qname_text == "www.example.com"
    assert parse_query(query("Www.example.com").pack()).qname_text == "Www.example.com"
    assert parse_query(query("a\\.b.example.com").pack()).qname_text == "a\\.b.example.com"


@pytest.mark.parametrize(
    "labels",
    [[b"a.b", b"example"], [b"a b", b"example"], [b"a\x00b", b"com"], [b"caf\xc3\xa9", b"example"], [b"."]],
)
def test_a_name_with_bytes_no_policy_name_has_is_unmatchable(labels):
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    data = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    assert parse_query(data).qname is None


def test_hostname_characters_make_a_policy_name():
    name = b"\x05Ab_-9\x07example\x00"
    data = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    assert parse_query(data).qname == "ab_-9.example"
