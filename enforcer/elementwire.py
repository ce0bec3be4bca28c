"""Allow-set element writes as one nf_tables netlink batch, and the kernel's answers. Pure: bytes only.

Why not libnftables: every libnftables call rebuilds its cache (tables, sets, chains, objects, the
elements of interval sets) and parses its input before it sends anything, ~230 µs for one element and
~1.2 ms for 64, measured (bench/nftwrite.py); the batch it finally sends costs the kernel a few µs.
An answer waits for its write, so the per-answer writes are encoded here and sent by
enforcer.elementsocket; tables, chains, rules, the other sets and every listing stay on libnftables'
JSON API (enforcer.nft).

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

import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from enforcer.netlink import (
    NFGENMSG,
    NFNL_SUBSYS_NFTABLES,
    NFPROTO_INET,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    attribute,
    error_of,
    message,
    messages,
    nested,
)
from enforcer.nflogwire import PROTOCOLS
from enforcer.ruleset import COMMENT_LENGTH, element_set_name
from policy.allowtable import Element, ElementWrite

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

ADD, DELETE = "add", "delete"
_TYPES = {ADD: NFT_MSG_NEWSETELEM, DELETE: NFT_MSG_DELSETELEM}
_FLAGS = {ADD: NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, DELETE: NLM_F_REQUEST | NLM_F_ACK}


@dataclass(frozen=True, slots=True)
class ElementChange:
    """One request's element changes in one table: deletes go before writes (as element_commands)."""

    table: str
    writes: tuple[ElementWrite, ...] = ()
    deletes: tuple[Element, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """What one element message of a batch does, for the error that names it."""

    verb: str
    table: str
    set: str
    elements: int


@dataclass(frozen=True, slots=True)
class ElementBatch:
    data: bytes
    begin_seq: int  # an error under this sequence number is the batch's (say, its commit failed)
    targets: dict[int, Target]  # sequence number of each element message -> what it does
    next_seq: int  # the first sequence number after this batch


class ElementRefused(OSError):
    """The kernel refused an element message (errno set), or the whole batch."""

    def __init__(self, errno: int, target: Target | None) -> None:
        self.target = target
        super().__init__(errno, describe(errno, target))


def describe(errno: int, target: Target | None) -> str:
    reason = os.strerror(errno) if errno else "no answer"
    if target is None:
        return f"nf_tables refused the element batch: {reason}"
    what = f"{target.verb} {target.elements} element(s) {'to' if target.verb == ADD else 'from'} set"
    hint = ""
    if errno == 2:  # ENOENT
        missing = "the table or the set" if target.verb == ADD else "the table, the set or an element"
        hint = f" ({missing} does not exist)"
    return f"{what} inet {target.table} {target.set}: {reason}{hint}"


def element_key(element: Element) -> bytes:
    """The concatenated key: each field in network order, padded to 4 bytes (nft's concat layout:
    an address 4 or 16, inet_proto 1 byte, inet_service 2 bytes, each then to a 4-byte register)."""
    src, dst, proto, port = element
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    try:
        key = socket.inet_pton(family, src) + socket.inet_pton(family, dst)
    except OSError as error:
        raise ValueError(f"element {element}: pod and destination must be of one IP version") from error
    if proto is not None:
        number = PROTOCOL_NUMBERS.get(proto)
        if number is None:
            raise ValueError(f"element {element}: protocol {proto!r} has no number here")
        key += bytes((number, 0, 0, 0))
        if port is not None:
            key += struct.pack("!H", port) + b"\0\0"
    return key


def comment_userdata(name: str) -> bytes:
    """The element's comment as libnftnl stores it: one TLV, NUL-terminated (an empty name too)."""
    value = name[:COMMENT_LENGTH].encode()[:COMMENT_LENGTH] + b"\0"
    return bytes((NFTNL_UDATA_SET_ELEM_COMMENT, len(value))) + value


def write_element(write: ElementWrite) -> bytes:
    milliseconds = struct.pack("!Q", write.timeout * 1000)
    return nested(
        NFTA_LIST_ELEM,
        attribute(NFTA_SET_ELEM_TIMEOUT, milliseconds)
        # An element re-added with a timeout alone keeps its old expiry (Linux 6.10+ updates only when
        # the expiration is given): both go, as element_commands writes `expires` too.
        + attribute(NFTA_SET_ELEM_EXPIRATION, milliseconds)
        + nested(NFTA_SET_ELEM_KEY, attribute(NFTA_DATA_VALUE, element_key(write.element)))
        + attribute(NFTA_SET_ELEM_USERDATA, comment_userdata(write.name)),
    )


def delete_element(element: Element) -> bytes:
    return nested(NFTA_LIST_ELEM, nested(NFTA_SET_ELEM_KEY, attribute(NFTA_DATA_VALUE, element_key(element))))


@dataclass(slots=True)
class _Message:
    verb: str
    table: str
    set: str
    elements: list[bytes] = field(default_factory=list)
    size: int = 0


def _plan(changes: Iterable[ElementChange]) -> list[_Message]:
    """Element messages in an order with the effect of running the changes one after another.

    Changes to different sets commute, so a set's elements join its latest message of the same verb
    unless a message of the other verb for that set came since (an add, then a delete, then the same
    add must stay in that order). Bursts of answers thus cost one message per set, not per answer."""
    out: list[_Message] = []
    latest: dict[tuple[str, str], _Message] = {}
    for change in changes:
        items = [(DELETE, e, delete_element(e)) for e in change.deletes]
        items += [(ADD, w.element, write_element(w)) for w in change.writes]
        for verb, element, encoded in items:
            key = (change.table, element_set_name(element))
            current = latest.get(key)
            if current is None or current.verb != verb or current.size + len(encoded) > ELEMENTS_LIMIT:
                current = _Message(verb, change.table, key[1])
                latest[key] = current
                out.append(current)
            current.elements.append(encoded)
            current.size += len(encoded)
    return out


def _batch_marker(kind: int, seq: int) -> bytes:
    return message(kind, NLM_F_REQUEST, seq, NFGENMSG.pack(socket.AF_UNSPEC, 0, NFNL_SUBSYS_NFTABLES))


def encode_batch(changes: Iterable[ElementChange], seq: int) -> ElementBatch:
    """One transaction: all of it takes effect, or none. ValueError for an element that cannot be
    encoded (nothing is sent then)."""
    parts = [_batch_marker(NFNL_MSG_BATCH_BEGIN, seq)]
    begin_seq = seq
    targets: dict[int, Target] = {}
    for planned in _plan(changes):
        seq += 1
        body = NFGENMSG.pack(NFPROTO_INET, 0, 0)
        body += attribute(NFTA_SET_ELEM_LIST_TABLE, planned.table.encode() + b"\0")
        body += attribute(NFTA_SET_ELEM_LIST_SET, planned.set.encode() + b"\0")
        body += nested(NFTA_SET_ELEM_LIST_ELEMENTS, b"".join(planned.elements))
        kind = (NFNL_SUBSYS_NFTABLES << 8) | _TYPES[planned.verb]
        parts.append(message(kind, _FLAGS[planned.verb], seq, body))
        targets[seq] = Target(planned.verb, planned.table, planned.set, len(planned.elements))
    seq += 1
    parts.append(_batch_marker(NFNL_MSG_BATCH_END, seq))
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
        """Every message answered, or the batch failed as a whole (nothing more will come for it)."""
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
