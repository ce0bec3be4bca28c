"""fqdn_policy.enforcer.elementwire against fixed bytes.

The expected element lists are what libnftables 1.0.6 sent for the same JSON `add element` / `delete
element` (captured with `strace -e sendmsg -xx` on Nft.run(element_commands(...))): the element path
over netlink must write exactly what the libnftables path wrote.
"""

import errno
import struct

import pytest

from fqdn_policy.enforcer.elementwire import (
    ELEMENTS_LIMIT,
    Acknowledgements,
    ElementChange,
    element_key,
    encode_batch,
)
from fqdn_policy.enforcer.netlink import NFGENMSG, NLMSG_ERROR, NLMSGHDR, attributes, message
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.policy.state.elements import ElementWrite

# NFTA_SET_ELEM_LIST_ELEMENTS payloads, byte for byte as libnftables sent them.
LIBNFTABLES_V4_PORT = bytes.fromhex(
    "4c000180"  # NFTA_LIST_ELEM (nested), 76 bytes
    " 0c000400 00000000000927c0"  # NFTA_SET_ELEM_TIMEOUT, 600,000 ms
    " 0c000500 00000000000927c0"  # NFTA_SET_ELEM_EXPIRATION, 600,000 ms
    " 18000180 14000100 0af40005 cb007107 06000000 01bb0000"  # KEY: pod . dst . tcp . 443
    " 16000600 0010 7777772e6578616d706c652e636f6d00 0000"  # USERDATA: comment TLV; padding
)
LIBNFTABLES_V6 = bytes.fromhex(
    "5c000180"
    " 0c000400 0000000000007530"  # 30,000 ms
    " 0c000500 0000000000007530"
    " 28000180 24000100 20010db8024400000000000000000010 20010db8000000000000000000000007"
    " 15000600 000f 76362e6578616d706c652e636f6d00 000000"
)
LIBNFTABLES_V4_PROTO_NO_COMMENT = bytes.fromhex(
    "38000180"
    " 0c000400 0000000000007530"
    " 0c000500 0000000000007530"
    " 14000180 10000100 0af40005 cb007109 11000000"  # udp: 17, padded to 4 bytes
    " 07000600 000100 00"  # an empty comment is still written: one NUL
)
LIBNFTABLES_DELETE = bytes.fromhex("18000180 14000180 10000100 0af40005 cb007109 11000000")

V4_PORT = ElementWrite(("10.244.0.5", "203.0.113.7", "tcp", 443), 600, 0.0, "www.example.com")
V6 = ElementWrite(("2001:db8:244::10", "2001:db8::7", None, None), 30, 0.0, "v6.example.com")
V4_PROTO = ElementWrite(("10.244.0.5", "203.0.113.9", "udp", None), 30, 0.0, "")


def element_messages(batch):
    """(type, flags, seq, family, res_id, attributes) of each message."""
    out = []
    offset = 0
    while offset < len(batch.data):
        length, kind, flags, seq, _ = NLMSGHDR.unpack_from(batch.data, offset)
        body = batch.data[offset + NLMSGHDR.size : offset + length]
        family, _version, res_id = NFGENMSG.unpack_from(body)
        out.append((kind, flags, seq, family, res_id, attributes(body)))
        offset += length
    return out


def test_one_v4_port_element_is_the_batch_libnftables_sends():
    batch = encode_batch([ElementChange("fqdn_policy", (V4_PORT,))], 7)
    begin, add, end = element_messages(batch)
    assert begin[:5] == (0x10, 0x1, 7, 0, 10)  # BATCH_BEGIN, request, AF_UNSPEC, NFNL_SUBSYS_NFTABLES
    assert end[:5] == (0x11, 0x1, 9, 0, 10)
    # NEWSETELEM; NLM_F_REQUEST | NLM_F_CREATE (no EXCL: `add` updates an element) | NLM_F_ACK; inet
    assert add[:5] == ((10 << 8) | 12, 0x405, 8, 1, 0)
    assert add[5] == {1: b"fqdn_policy\0", 2: b"allow_v4_port\0", 3: LIBNFTABLES_V4_PORT}
    assert batch.begin_seq == 7 and batch.next_seq == 10
    assert {seq: (t.verb, t.set, t.elements) for seq, t in batch.targets.items()} == {
        8: ("add", "allow_v4_port", 1)
    }


def test_one_whole_message_byte_for_byte():
    batch = encode_batch([ElementChange("fqdn_policy", (V4_PORT,))], 0)
    expected = message(
        (10 << 8) | 12,
        0x405,
        1,
        bytes.fromhex("01000000")
        + bytes.fromhex("10000100") + b"fqdn_policy\0"
        + bytes.fromhex("12000200") + b"allow_v4_port\0" + b"\0\0"
        + bytes.fromhex("50000380") + LIBNFTABLES_V4_PORT,
    )  # fmt: skip
    assert batch.data[20:-20] == expected
    assert batch.data[:20] == bytes.fromhex("140000001000010000000000000000000000000a")


@pytest.mark.parametrize(
    ("write", "set_name", "expected"),
    [(V6, "allow_v6", LIBNFTABLES_V6), (V4_PROTO, "allow_v4_proto", LIBNFTABLES_V4_PROTO_NO_COMMENT)],
)
def test_v6_and_protocol_elements_match_libnftables(write, set_name, expected):
    (_, add, _) = element_messages(encode_batch([ElementChange("fqdn_policy", (write,))], 0))
    assert add[5] == {1: b"fqdn_policy\0", 2: set_name.encode() + b"\0", 3: expected}


def test_a_delete_is_the_key_alone_without_create():
    batch = encode_batch([ElementChange("fqdn_policy", (), (V4_PROTO.element,))], 0)
    (_, delete, _) = element_messages(batch)
    assert delete[:2] == ((10 << 8) | 14, 0x5)  # DELSETELEM, request | ack
    assert delete[5][3] == LIBNFTABLES_DELETE


def test_a_long_comment_is_cut_as_element_commands_cuts_it():
    name = "a" * 200
    (_, add, _) = element_messages(encode_batch([ElementChange("t", (V4_PORT._replace(name=name),))], 0))
    userdata = add[5][3][-(2 + 128 + 2) : -2]  # the TLV, then the attribute's padding
    assert userdata == bytes((0, 128)) + b"a" * 127 + b"\0"


def test_keys_pad_protocol_and_port_to_four_bytes():
    assert element_key(("10.0.0.1", "10.0.0.2", "sctp", 9)) == bytes.fromhex(
        "0a000001 0a000002 84000000 00090000"
    )
    with pytest.raises(ValueError, match="one IP version"):
        element_key(("10.0.0.1", "2001:db8::1", None, None))
    with pytest.raises(ValueError, match="icmp-ish"):
        element_key(("10.0.0.1", "10.0.0.2", "icmp-ish", None))


def test_deletes_go_first_and_sets_are_grouped_across_requests():
    other = ElementWrite(("10.244.0.6", "203.0.113.8", "tcp", 443), 60, 0.0, "b.example")
    batch = encode_batch(
        [
            ElementChange("t", (V4_PORT, V6)),
            ElementChange("t", (other,), (V4_PROTO.element,)),
        ],
        0,
    )
    targets = [(t.verb, t.set, t.elements) for t in batch.targets.values()]
    assert targets == [("add", "allow_v4_port", 2), ("add", "allow_v6", 1), ("delete", "allow_v4_proto", 1)]


def test_an_add_a_delete_and_the_add_again_keep_their_order():
    first = ElementChange("t", (V4_PROTO,))
    evicted = ElementChange("t", (), (V4_PROTO.element,))
    again = ElementChange("t", (V4_PROTO,))
    targets = [t.verb for t in encode_batch([first, evicted, again], 0).targets.values()]
    assert targets == ["add", "delete", "add"]


def test_a_set_past_one_attribute_goes_in_several_messages_of_one_batch():
    writes = tuple(
        ElementWrite(("10.244.0.5", f"203.0.{i // 256}.{i % 256}", "tcp", 443), 60, 0.0, "x" * 100)
        for i in range(5000)
    )
    batch = encode_batch([ElementChange("t", writes)], 0)
    parts = element_messages(batch)
    assert [p[0] for p in (parts[0], parts[-1])] == [0x10, 0x11]  # one batch: one transaction
    adds = parts[1:-1]
    assert len(adds) > 1 and all(len(p[5][3]) <= ELEMENTS_LIMIT for p in adds)
    assert sum(t.elements for t in batch.targets.values()) == 5000


def ack(seq, code=0):
    return message(NLMSG_ERROR, 0, seq, struct.pack("=i", -code) + b"\0" * 16)


def test_success_needs_every_message_acknowledged():
    batch = encode_batch([ElementChange("t", (V4_PORT, V6))], 100)
    answers = Acknowledgements.of(batch)
    answers.feed(ack(101))
    assert not answers.complete
    answers.feed(ack(55, errno.ENOENT) + ack(102))  # another batch's refusal is not this one's
    assert answers.complete and answers.outcome() is None


def test_a_refusal_names_the_set_and_the_errno():
    batch = encode_batch([ElementChange("fqdn_policy", (V4_PORT, V6))], 0)
    answers = Acknowledgements.of(batch)
    answers.feed(ack(1) + ack(2, errno.ENOENT))
    refused = answers.outcome()
    assert refused is not None and refused.errno == errno.ENOENT
    assert str(refused) == (
        "[Errno 2] add 1 element(s) to set inet fqdn_policy allow_v6: No such file or directory"
        " (the table or the set does not exist)"
    )


def test_an_error_on_the_batch_itself_ends_the_wait():
    batch = encode_batch([ElementChange("t", (V4_PORT,))], 40)
    answers = Acknowledgements.of(batch)
    answers.feed(ack(40, errno.ENOMEM))
    assert answers.complete and answers.outcome().errno == errno.ENOMEM
    assert "refused the element batch" in str(answers.outcome())


# Refresh.REPLACE: kernels before 6.10 ignore a re-add (fqdn_policy.enforcer.refresh).


def replace_steps(changes):
    batch = encode_batch(changes, 0, Refresh.REPLACE)
    steps = []
    for kind, _flags, seq, _family, _res, attrs in element_messages(batch)[1:-1]:
        target = batch.targets[seq]
        assert (kind & 0xFF) == (12 if target.verb == "add" else 14)
        steps.append((target.verb, target.set, attrs[3]))
    return steps


def test_a_replace_ensures_deletes_and_adds_each_written_element_in_one_batch():
    steps = replace_steps([ElementChange("fqdn_policy", (V4_PORT,))])
    assert steps == [
        ("add", "allow_v4_port", LIBNFTABLES_V4_PORT),  # creates it if the kernel expired it meanwhile
        ("delete", "allow_v4_port", delete_of(V4_PORT)),
        ("add", "allow_v4_port", LIBNFTABLES_V4_PORT),  # the new timeout
    ]


def delete_of(write):
    (_, delete, _) = element_messages(encode_batch([ElementChange("t", (), (write.element,))], 0))
    return delete[5][3]


def test_a_replace_groups_a_burst_by_set_and_step():
    other = ElementWrite(("10.244.0.6", "203.0.113.8", "tcp", 443), 60, 0.0, "b.example")
    steps = replace_steps([ElementChange("t", (V4_PORT, V6)), ElementChange("t", (other,))])
    assert [(verb, name) for verb, name, _ in steps] == [
        ("add", "allow_v4_port"),
        ("add", "allow_v6"),
        ("delete", "allow_v4_port"),
        ("delete", "allow_v6"),
        ("add", "allow_v4_port"),
        ("add", "allow_v6"),
    ]
    assert steps[0][2] == steps[4][2] and steps[0][2].startswith(LIBNFTABLES_V4_PORT)
    assert steps[2][2] == delete_of(V4_PORT) + delete_of(other)


def test_a_replace_writes_an_element_once_with_its_longest_timeout():
    longer = V4_PORT._replace(timeout=900, expiry=900.0)
    steps = replace_steps([ElementChange("t", (longer,)), ElementChange("t", (V4_PORT,))])
    assert len(steps) == 3  # a second delete of the same element would fail the whole batch
    assert steps[2][2] == only_message(longer)


def only_message(write):
    (_, add, _) = element_messages(encode_batch([ElementChange("t", (write,))], 0))
    return add[5][3]


def test_a_replace_keeps_the_end_state_of_deletes_and_writes_in_order():
    evicted = ElementChange("t", (), (V4_PROTO.element,))
    # written, then deleted: ensured and deleted, not added back
    assert [v for v, _, _ in replace_steps([ElementChange("t", (V4_PROTO,)), evicted])] == ["add", "delete"]
    # deleted, then written: replaced (the first delete would fail on an element the kernel lacks)
    steps = replace_steps([evicted, ElementChange("t", (V4_PROTO,))])
    assert [v for v, _, _ in steps] == ["add", "delete", "add"]
    # deleted alone: a plain delete, before anything else
    steps = replace_steps([ElementChange("t", (V4_PORT,)), evicted])
    assert [(v, s) for v, s, _ in steps] == [
        ("delete", "allow_v4_proto"),
        ("add", "allow_v4_port"),
        ("delete", "allow_v4_port"),
        ("add", "allow_v4_port"),
    ]


def test_the_update_strategy_is_a_single_add():
    batch = encode_batch([ElementChange("t", (V4_PORT,))], 0, Refresh.UPDATE)
    assert [t.verb for t in batch.targets.values()] == ["add"]
