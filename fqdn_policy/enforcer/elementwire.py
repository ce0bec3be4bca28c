"""Allow-set element writes as one nf_tables netlink batch, and the kernel's answers. Pure: bytes only.

Why not libnftables: every libnftables call rebuilds its cache (tables, sets, chains, objects, the
elements of interval sets) and parses its input before it sends anything, ~230 µs for one element and
~1.2 ms for 64, measured (bench/nftwrite.py); the batch it finally sends costs the kernel a few µs.
An answer waits for its write, so the per-answer writes are encoded here and sent by
enforcer.elementsocket; tables, chains, rules, the other sets and every listing stay on libnftables'
JSON API (fqdn_policy.enforcer.nft).

The messages are those libnftables 1.0.6 sends for our JSON `add element` / `delete element`, read off
with `strace -e sendmsg` (linux/netfilter/nf_tables.h, libnftnl's set_elem.c and udata.h):

    BATCH_BEGIN  (family AF_UNSPEC, res_id NFNL_SUBSYS_NFTABLES)
    NEWSETELEM   NLM_F_CREATE (no NLM_F_EXCL: `add`, an existing element is updated), family inet
        NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS {
            NFTA_LIST_ELEM { TIMEOUT be64 ms, EXPIRATION be64 ms, KEY { DATA_VALUE }, USERDATA } ... }
    DELSETELEM   the same with the key alone
    BATCH_END

with two differences: every element message asks for an acknowledgement (NLM_F_ACK), so success is
known rather than inferred from the absence of an error; and NFTA_SET_ELEM_LIST_SET_ID is left out (it
names a set created in the same batch, never the case here).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from socket import AF_INET, AF_INET6, AF_UNSPEC, inet_pton
from typing import NamedTuple

from fqdn_policy.enforcer.netlink import (
    NFGENMSG,
    NFNL_SUBSYS_NFTABLES,
    NFPROTO_INET,
    NLA,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NLMSGHDR,
    attribute,
    error_of,
    messages,
    nested,
)
from fqdn_policy.enforcer.nflogwire import PROTOCOLS
from fqdn_policy.enforcer.refresh import Refresh, latest_writes
from fqdn_policy.enforcer.ruleset import COMMENT_LENGTH, set_name
from fqdn_policy.policy.model import SNI
from fqdn_policy.policy.state.elements import Element, ElementWrite

NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14

NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_TIMEOUT = 4
NFTA_SET_ELEM_EXPIRATION = 5
NFTA_SET_ELEM_USERDATA = 6
NFTA_DATA_VALUE = 1
NFTNL_UDATA_SET_ELEM_COMMENT = 0  # libnftnl's user-data TLV: type u8, length u8, value

# An attribute's length is a u16: a set's elements beyond what one NFTA_SET_ELEM_LIST_ELEMENTS holds
# go in further messages of the same batch (libnftnl splits the same way), still one transaction.
ELEMENTS_LIMIT = 0xFFFF - 4

PROTOCOL_NUMBERS = {name: number for number, name in PROTOCOLS.items()}
_PROTOCOL_FIELDS = {name: bytes((number, 0, 0, 0)) for name, number in PROTOCOL_NUMBERS.items()}
_PORT_FIELD = struct.Struct("!H2x")
_BE64 = struct.Struct("!Q")
# NFTA_LIST_ELEM's header; TIMEOUT and EXPIRATION with their values; KEY's and DATA_VALUE's headers.
_ELEMENT_HEAD = struct.Struct("=HHHH8sHH8sHHHH")
_ELEMENT_FIXED = _ELEMENT_HEAD.size
_BATCH_GENMSG = NFGENMSG.pack(AF_UNSPEC, 0, NFNL_SUBSYS_NFTABLES)  # batch begin and end
_INET_GENMSG = NFGENMSG.pack(NFPROTO_INET, 0, 0)
# The allow set of an element, by (IPv6, no protocol, no port): ruleset.set_name, looked up once.
_SET_NAMES = {
    (v6, no_proto, no_port): set_name(6 if v6 else 4, None if no_proto else "tcp", None if no_port else 1)
    for v6 in (False, True)
    for no_proto in (False, True)
    for no_port in (False, True)
}
_SNI_SET_NAMES = {
    (v6, no_port): set_name(6 if v6 else 4, SNI, None if no_port else 1)
    for v6 in (False, True)
    for no_port in (False, True)
}
# Both by (IPv6, protocol, no port) for every protocol an element can name: one lookup per element, no
# comparison with SNI first (an element without a protocol compares None with a string slowly).
_SET_OF = {
    (v6, proto, no_port): (
        _SNI_SET_NAMES[v6, no_port] if proto == SNI else _SET_NAMES[v6, proto is None, no_port]
    )
    for v6 in (False, True)
    for proto in (None, *PROTOCOL_NUMBERS, SNI)
    for no_port in (False, True)
}

ADD, DELETE = "add", "delete"
_TYPES = {ADD: NFT_MSG_NEWSETELEM, DELETE: NFT_MSG_DELSETELEM}
_FLAGS = {ADD: NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, DELETE: NLM_F_REQUEST | NLM_F_ACK}


class ElementChange(NamedTuple):
    """One request's element changes in one table: deletes go before writes (as element_commands)."""

    table: str
    writes: tuple[ElementWrite, ...] = ()
    deletes: tuple[Element, ...] = ()


class Target(NamedTuple):
    """What one element message of a batch does, for the error that names it."""

    verb: str
    table: str
    set: str
    elements: int


class ElementBatch(NamedTuple):
    data: bytes
    begin_seq: int  # an error under this sequence number is the batch's (say, its commit failed)
    targets: dict[int, Target]  # sequence number of each element message -> what it does
    next_seq: int  # the first sequence number after this batch


class ElementRefused(OSError):
    """The kernel refused an element message, or the whole batch (target None): nothing was applied."""

    def __init__(self, code: int, target: Target | None) -> None:
        self.target = target
        super().__init__(code, describe(code, target))


def describe(code: int, target: Target | None) -> str:
    if target is None:
        return f"nf_tables refused the element batch: {os.strerror(code)}"
    what = f"{target.verb} {target.elements} element(s) {'to' if target.verb == ADD else 'from'} set"
    hint = ""
    if code == errno.ENOENT:
        missing = "the table or the set" if target.verb == ADD else "the table, the set or an element"
        hint = f" ({missing} does not exist)"
    return f"{what} inet {target.table} {target.set}: {os.strerror(code)}{hint}"


def element_key(element: Element) -> bytes:
    """The concatenated key: each field in network order, padded to 4 bytes (nft's concat layout:
    an address 4 or 16, inet_proto 1 byte, inet_service 2 bytes, each then to a 4-byte register)."""
    src, dst, proto, port = element
    family = AF_INET6 if ":" in dst else AF_INET
    try:
        key = inet_pton(family, src) + inet_pton(family, dst)
    except OSError as error:
        raise ValueError(f"element {element}: pod and destination must be of one IP version") from error
    if proto is None:
        return key
    protocol = _PROTOCOL_FIELDS.get(proto)
    if protocol is None:  # SNI is no protocol number, so asking here costs TCP and UDP elements nothing
        if proto == SNI:  # the verifying sets have no protocol field: their rules match TCP
            return key if port is None else key + _PORT_FIELD.pack(port)
        raise ValueError(f"element {element}: protocol {proto!r} has no number here")
    return key + protocol if port is None else key + protocol + _PORT_FIELD.pack(port)


def comment(name: str) -> bytes:
    """The comment's bytes (the NUL and the TLV header are added by write_element)."""
    return name[:COMMENT_LENGTH].encode()[:COMMENT_LENGTH]


def write_element(write: ElementWrite) -> bytes:
    """One NFTA_LIST_ELEM: TIMEOUT, EXPIRATION, KEY { DATA_VALUE }, USERDATA { comment TLV }.

    Packed in one go rather than attribute by attribute: this runs once per element an answer
    writes. Both times go: an element re-added with a timeout alone keeps its old expiry (Linux 6.10+
    updates it only when the expiration is given; older kernels not at all: fqdn_policy.enforcer.refresh), as
    element_commands writes `expires` too."""
    key = element_key(write.element)
    text = comment(write.name)
    userdata = 4 + 2 + len(text) + 1  # attribute header, TLV type and length, the text, its NUL
    padding = -userdata & 3
    milliseconds = _BE64.pack(write.timeout * 1000)
    head = _ELEMENT_HEAD.pack(
        _ELEMENT_FIXED + len(key) + userdata + padding,
        NFTA_LIST_ELEM | NLA_F_NESTED,
        12,
        NFTA_SET_ELEM_TIMEOUT,
        milliseconds,
        12,
        NFTA_SET_ELEM_EXPIRATION,
        milliseconds,
        8 + len(key),
        NFTA_SET_ELEM_KEY | NLA_F_NESTED,
        4 + len(key),
        NFTA_DATA_VALUE,
    )
    tlv = NLA.pack(userdata, NFTA_SET_ELEM_USERDATA) + bytes((NFTNL_UDATA_SET_ELEM_COMMENT, len(text) + 1))
    return b"".join((head, key, tlv, text, b"\0" * (1 + padding)))


def delete_element(element: Element) -> bytes:
    return nested(NFTA_LIST_ELEM, nested(NFTA_SET_ELEM_KEY, attribute(NFTA_DATA_VALUE, element_key(element))))


@dataclass(slots=True)
class _Message:
    verb: str
    table: str
    set: str
    elements: list[bytes] = field(default_factory=list)
    size: int = 0


def _plan(changes: Iterable[ElementChange], refresh: Refresh = Refresh.UPDATE) -> list[_Message]:
    """Element messages in an order with the effect of running the changes one after another.

    Changes to different sets commute, so a set's elements join its latest message of the same verb
    unless a message of the other verb for that set came since (an add, then a delete, then the same
    add must stay in that order). Bursts of answers thus cost one message per set, not per answer.
    With Refresh.REPLACE see _plan_replace."""
    if refresh is Refresh.REPLACE:
        return _plan_replace(list(changes))
    out: list[_Message] = []
    latest: dict[tuple[str, str], _Message] = {}

    def place(verb: str, table: str, element: Element, encoded: bytes) -> None:
        key = (table, _set_of(element))
        current = latest.get(key)
        if current is None or current.verb != verb or current.size + len(encoded) > ELEMENTS_LIMIT:
            current = latest[key] = _Message(verb, table, key[1])
            out.append(current)
        current.elements.append(encoded)
        current.size += len(encoded)

    for change in changes:
        for element in change.deletes:
            place(DELETE, change.table, element, delete_element(element))
        for write in change.writes:
            place(ADD, change.table, write.element, write_element(write))
    return out


def _plan_replace(changes: list[ElementChange]) -> list[_Message]:
    """The same end state for kernels that ignore a re-add (enforcer.refresh): per set, the deletes of
    elements no change writes, then `add` (ensure), `delete`, `add` of every written element. An element
    a later change deletes again is ensured and deleted, not added back; one written twice goes once,
    with the later expiry."""
    written = latest_writes((c.table, w) for c in changes for w in c.writes)
    gone: dict[tuple[str, Element], None] = {}  # deleted after its last write, or never written
    for change in changes:
        for element in change.deletes:
            gone[(change.table, element)] = None
        for write in change.writes:
            gone.pop((change.table, write.element), None)
    messages: dict[tuple[str, str, int], _Message] = {}

    def place(step: int, verb: str, table: str, element: Element, encoded: bytes) -> None:
        key = (table, _set_of(element), step)
        current = messages.get(key)
        if current is None or current.size + len(encoded) > ELEMENTS_LIMIT:
            current = _Message(verb, table, key[1])
            messages[key] = current
            ordered.append((key, current))
        current.elements.append(encoded)
        current.size += len(encoded)

    ordered: list[tuple[tuple[str, str, int], _Message]] = []
    for table, element in gone:
        if (table, element) not in written:
            place(0, DELETE, table, element, delete_element(element))
    for (table, element), write in written.items():
        encoded = write_element(write)
        place(1, ADD, table, element, encoded)
        place(2, DELETE, table, element, delete_element(element))
        if (table, element) not in gone:
            place(3, ADD, table, element, encoded)
    # Sets commute; within a set the steps keep their order (a split message keeps its place).
    ordered.sort(key=lambda item: item[0][2])
    return [message for _, message in ordered]


def _set_of(element: Element) -> str:
    try:  # a subscript, not .get: a method call per element costs what the one lookup saved
        return _SET_OF[":" in element[1], element[2], element[3] is None]
    except KeyError:  # a protocol with no number here (element_key refuses it): a protocol set's name
        return _SET_NAMES[":" in element[1], False, element[3] is None]


@lru_cache(maxsize=256)
def _names(table: str, set_name: str) -> bytes:
    return attribute(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0") + attribute(
        NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0"
    )


def encode_batch(
    changes: Iterable[ElementChange], seq: int, refresh: Refresh = Refresh.UPDATE
) -> ElementBatch:
    """One transaction: all of it takes effect, or none. ValueError for an element that cannot be
    encoded (nothing is sent then). `refresh`: how an existing element gets its new timeout."""
    begin_seq = seq
    parts = [NLMSGHDR.pack(20, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0), _BATCH_GENMSG]
    targets: dict[int, Target] = {}
    for planned in _plan(changes, refresh):
        seq += 1
        names = _names(planned.table, planned.set)
        length = NLMSGHDR.size + NFGENMSG.size + len(names) + NLA.size + planned.size
        kind = _TYPES[planned.verb]
        parts += (
            NLMSGHDR.pack(length, (NFNL_SUBSYS_NFTABLES << 8) | kind, _FLAGS[planned.verb], seq, 0),
            _INET_GENMSG,
            names,
            NLA.pack(NLA.size + planned.size, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED),
            *planned.elements,
        )
        targets[seq] = Target(planned.verb, planned.table, planned.set, len(planned.elements))
    seq += 1
    parts += (NLMSGHDR.pack(20, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0), _BATCH_GENMSG)
    return ElementBatch(b"".join(parts), begin_seq, targets, seq + 1)


@dataclass(slots=True)
class Acknowledgements:
    """What the kernel has said so far about one batch (fed one datagram at a time)."""

    batch: ElementBatch
    waiting: set[int]
    refused: list[ElementRefused] = field(default_factory=list)
    failed_whole: bool = False

    @classmethod
    def of(cls, batch: ElementBatch) -> Acknowledgements:
        return cls(batch, set(batch.targets))

    @property
    def complete(self) -> bool:
        """Every message answered, or the batch failed as a whole (whatever follows for it is moot)."""
        return not self.waiting or self.failed_whole

    def feed(self, data: bytes) -> None:
        """Answers to other batches (a late one of an abandoned batch) are ignored by sequence number."""
        for kind, seq, body in messages(data):
            if kind != NLMSG_ERROR:
                continue
            error = error_of(body, seq)
            if error is None:
                continue
            if seq == self.batch.begin_seq and error.errno:
                self.failed_whole = True
                self.refused.append(ElementRefused(error.errno, None))
            elif seq in self.waiting:
                self.waiting.discard(seq)
                if error.errno:
                    self.refused.append(ElementRefused(error.errno, self.batch.targets[seq]))

    def outcome(self) -> ElementRefused | None:
        """None: every message acknowledged with errno 0. Otherwise the first refusal."""
        return self.refused[0] if self.refused else None
