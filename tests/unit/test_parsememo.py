"""Parse memos: a repeated message reuses its parse, and nothing else ever does."""

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from fqdn_policy.dnsproxy.parsememo import MAX_REMEMBERED, AnswerMemo, QueryMemo
from fqdn_policy.dnsproxy.wire import WireError, parse_answer, parse_query, with_id


def query_wire(name="www.example.com", ident=0x1234, qtype="A"):
    record = DNSRecord.question(name, qtype)
    record.header.id = ident
    return bytes(record.pack())


def answer_wire(name="www.example.com", ident=0x1234, address="198.51.100.10", ttl=300):
    record = DNSRecord.question(name)
    reply = record.reply()
    reply.header.id = ident
    reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=ttl))
    return bytes(reply.pack())


def test_while_there_is_room_a_query_is_kept_at_once_and_reused_from_its_second_sighting():
    memo = QueryMemo()
    first = memo.parse(query_wire(ident=1))
    assert len(memo) == 1 and memo.hits == 0
    second = memo.parse(query_wire(ident=0xBEEF))
    assert second == parse_query(query_wire(ident=0xBEEF))
    assert second.id == 0xBEEF and first.id == 1
    assert second.question is first.question  # shared, so its hash is computed once
    assert memo.hits == 1


def test_once_half_full_a_query_is_kept_from_its_second_sighting_and_reused_from_its_third():
    memo = QueryMemo(capacity=8)
    for i in range(4):
        memo.parse(query_wire(f"n{i}.example.com"))
    assert len(memo) == 4  # half full: from now on only what comes back is kept
    memo.parse(query_wire(ident=1))
    assert len(memo) == 4  # seen once: only its hash is kept
    second = memo.parse(query_wire(ident=2))
    assert len(memo) == 5 and memo.hits == 0
    third = memo.parse(query_wire(ident=3))
    assert third.question is second.question and third.id == 3 and memo.hits == 1


def test_names_looked_up_once_fill_at_most_half_the_memo():
    memo = QueryMemo(capacity=1000)
    for i in range(10_000):
        memo.parse(query_wire(f"n{i}.example.com"))
    # Half is filled at once. Beyond that, sightings are bits indexed by hash: two names sharing a bit
    # admit the second one early. With 1,000 sightings per 2**20 bits that is ~5 names in 10,000 on
    # average; none of them comes back.
    assert 500 <= len(memo) <= 530
    for i in range(10_000, 10_100):
        memo.parse(query_wire(f"n{i}.example.com"))
        memo.parse(query_wire(f"n{i}.example.com"))
    assert len(memo) >= 600  # what does come back is still kept


def test_a_different_query_is_parsed_afresh():
    memo = QueryMemo()
    memo.parse(query_wire("a.example.com"))
    other = memo.parse(query_wire("b.example.com"))
    assert other.qname == "b.example.com" and memo.hits == 0
    assert memo.parse(query_wire("a.example.com", qtype="AAAA")).qtype == 28


def test_a_bad_query_raises_every_time_and_is_not_remembered():
    memo = QueryMemo()
    bad = query_wire()[:-3]
    for _ in range(2):
        with pytest.raises(WireError):
            memo.parse(bad)
    assert len(memo) == 0


def test_a_bytearray_is_copied_not_kept():
    memo = QueryMemo()
    data = bytearray(query_wire("a.example.com"))
    memo.parse(data)
    data[:] = query_wire("b.example.com")  # the caller reuses its buffer
    assert memo.parse(query_wire("a.example.com")).qname == "a.example.com"


def test_the_query_memo_never_holds_more_than_its_capacity():
    memo = QueryMemo(capacity=4)
    for i in range(10):
        for _ in range(3):
            memo.parse(query_wire(f"n{i}.example.com"))
        assert len(memo) <= 4
    assert memo.parse(query_wire("n9.example.com")).qname == "n9.example.com"


def test_the_same_answer_bytes_give_the_same_object_whatever_the_id():
    memo = AnswerMemo()
    question = parse_query(query_wire()).question
    kept = memo.parse(answer_wire(ident=1), question)  # room to spare: kept at its first sighting
    again = memo.parse(answer_wire(ident=2), question)
    assert again is kept and memo.hits == 1
    assert kept.repeatable and kept._replace(repeatable=False) == parse_answer(answer_wire(), question)


def test_only_a_kept_answer_is_marked_repeatable():
    memo = AnswerMemo(capacity=4)
    for i in range(2):  # half full
        name = f"n{i}.example.com"
        memo.parse(answer_wire(name), parse_query(query_wire(name)).question)
    question = parse_query(query_wire()).question
    first = memo.parse(answer_wire(ident=1), question)  # seen once: a fresh parse, not kept
    assert not first.repeatable
    assert memo.parse(answer_wire(ident=2), question).repeatable


def test_a_changed_answer_is_parsed_afresh_and_replaces_the_old():
    memo = AnswerMemo()
    question = parse_query(query_wire()).question
    first = memo.parse(answer_wire(ttl=300), question)
    counted_down = memo.parse(answer_wire(ttl=299), question)  # an upstream cache, a second later
    assert counted_down is not first and counted_down.addresses == ((4, "198.51.100.10", 299),)
    assert memo.hits == 0
    moved = memo.parse(answer_wire(address="198.51.100.11"), question)
    assert moved.addresses == ((4, "198.51.100.11", 300),)
    assert len(memo) == 1  # one kept answer per question: the new one replaced the old
    assert memo.parse(answer_wire(address="198.51.100.11"), question) is moved
    assert memo.parse(answer_wire(ttl=300), question) is not first  # replaced, so parsed again
    assert memo.hits == 1


def test_an_answer_is_never_reused_for_another_question():
    memo = AnswerMemo()
    mine = parse_query(query_wire("a.example.com")).question
    other = parse_query(query_wire("b.example.com")).question
    wire = answer_wire("a.example.com")
    memo.parse(wire, mine)
    memo.parse(wire, mine)
    with pytest.raises(WireError, match="another question"):
        memo.parse(wire, other)


def test_a_large_answer_is_parsed_every_time():
    memo = AnswerMemo()
    question = parse_query(query_wire()).question
    record = DNSRecord.parse(answer_wire())
    for i in range(40):
        record.add_answer(RR("www.example.com", QTYPE.A, rdata=A(f"198.51.100.{i}"), ttl=300))
    big = bytes(record.pack())
    assert len(big) > MAX_REMEMBERED
    first = memo.parse(big, question)
    memo.parse(with_id(big, 6), question)
    assert memo.parse(with_id(big, 7), question) is not first and len(memo) == 0


def test_the_answer_memo_never_holds_more_than_its_capacity():
    memo = AnswerMemo(capacity=3)
    for i in range(10):
        name = f"n{i}.example.com"
        for _ in range(3):
            memo.parse(answer_wire(name), parse_query(query_wire(name)).question)
        assert len(memo) <= 3
