"""Just enough of the DNS wire format for a policy-enforcing forwarder, parsed by hand.

The forwarder never re-encodes a message: queries and answers pass byte for byte, only the ID is
rewritten. What it must read is the question (to match policy and to check the answer belongs to the
query) and the A/AAAA records on the query name's CNAME chain. A general library (dnslib) builds every
record object of every message and measured ~10x slower on this path; the tests check this parser
against dnslib on generated messages.
"""

from __future__ import annotations

import re
import socket
import struct
from typing import NamedTuple

from fqdn_policy.dnsproxy.codes import CLASS_IN, RCODE_FORMERR, RCODE_NOERROR, TYPE_A, TYPE_AAAA, TYPE_CNAME

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength

FLAG_QR = 0x8000
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
OPCODE_MASK = 0x7800

MAX_NAME_WIRE = 255
MAX_POINTER_HOPS = 64
MAX_CNAME_HOPS = 16
_POINTER_TO_QUESTION = b"\xc0\x0c"  # a compression pointer to offset 12, where the question's name is

# Labels a policy name can contain; anything else (a dot, a space, a NUL inside a label) makes the name
# unmatchable, so no odd encoding can pose as an allowed name.
_HOSTNAME = re.compile(rb"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


class WireError(ValueError):
    """The message is not a DNS message this forwarder can vouch for."""


class Query(NamedTuple):
    """A named tuple, not a frozen dataclass: one is built per query, and a frozen dataclass's
    __init__ (object.__setattr__ per field) measured three to four times slower."""

    id: int
    flags: int
    question: bytes  # the wire question section: name, type, class
    qname: str | None  # normalised for policy; None when it cannot match any policy name
    qtype: int

    @property
    def qname_text(self) -> str:
        """The name for logs as the client spelled it, whatever bytes it holds."""
        if self.qname is not None and self.question.islower():
            return self.qname  # hostname characters only, already lower case: the same text, no parse
        return _printable_name(self.question)


class Answer(NamedTuple):
    rcode: int
    truncated: bool
    addresses: tuple[tuple[int, str, int], ...]  # (IP version, address, TTL) on the qname chain
    # True when this very object may be handed on again for a later identical answer (the parse memo
    # keeps it: fqdn_policy.dnsproxy.parsememo); a fresh parse of one datagram is never seen again.
    repeatable: bool = False


def parse_query(data: bytes) -> Query:
    if len(data) < HEADER.size:
        raise WireError("shorter than a DNS header")
    ident, flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data)
    if flags & FLAG_QR:
        raise WireError("a response, not a query")
    if qdcount != 1:
        raise WireError(f"{qdcount} questions; exactly one is supported")
    labels, offset = _question_labels(data, HEADER.size)
    if offset + 4 > len(data):
        raise WireError("question cut short")
    qtype = (data[offset] << 8) | data[offset + 1]
    question = bytes(data[HEADER.size : offset + 4])  # a no-op for bytes; callers may pass a bytearray
    return Query(ident, flags, question, _policy_name(labels), qtype)


def _question_labels(data: bytes, offset: int) -> tuple[list[bytes], int]:
    """Labels of an uncompressed name (a question has nothing earlier to point at)."""
    labels: list[bytes] = []
    total = 1
    end = len(data)
    while True:
        if offset >= end:
            raise WireError("name runs past the end of the message")
        length = data[offset]
        if length == 0:
            return labels, offset + 1
        if length & 0xC0:
            raise WireError("compressed or extended label in the question")
        total += length + 1
        if total > MAX_NAME_WIRE:
            raise WireError("name longer than 255 octets")
        labels.append(data[offset + 1 : offset + 1 + length])
        offset += 1 + length


def _policy_name(labels: list[bytes]) -> str | None:
    if not labels:
        return None
    joined = b".".join(labels)
    # One regex over the dotted name instead of one per label; a dot inside a label would pass it, so
    # the dot count must be exactly the joins'.
    if not _HOSTNAME.fullmatch(joined) or joined.count(b".") != len(labels) - 1:
        return None
    return joined.decode("ascii").lower()


def _printable_name(question: bytes) -> str:
    labels, _ = _question_labels(question, 0)
    if not labels:
        return "."
    return ".".join(label.decode("ascii", "backslashreplace").replace(".", "\\.") for label in labels)


def parse_answer(data: bytes, question: bytes) -> Answer:
    """Read an upstream answer to the query whose wire question is `question`.

    Raises WireError when it is not a response to that question; such a message must never reach a
    pod nor write to a set. Case differences in the echoed name are accepted (a resolver may apply
    0x20 randomisation); a length octet is below 64 so lower() cannot alter one.
    """
    if len(data) < HEADER.size:
        raise WireError("shorter than a DNS header")
    _ident, flags, qdcount, ancount, _ns, _ar = HEADER.unpack_from(data)
    if not flags & FLAG_QR:
        raise WireError("a query, not a response")
    end_q = HEADER.size + len(question)
    if qdcount != 1:
        raise WireError("answer is for another question")
    echoed = data[HEADER.size : end_q]
    if echoed != question and echoed.lower() != question.lower():
        raise WireError("answer is for another question")
    rcode = flags & 0x000F
    truncated = bool(flags & FLAG_TC)
    if rcode != RCODE_NOERROR or ancount == 0:
        return Answer(rcode, truncated, ())
    # The question was parsed uncompressed, so its name's key (see _read_name) is its wire form lowered.
    qname_key = question[:-4].lower()
    return Answer(rcode, truncated, tuple(_chain_addresses(data, end_q, ancount, truncated, qname_key)))


def _chain_addresses(
    data: bytes, offset: int, ancount: int, truncated: bool, qname_key: bytes
) -> list[tuple[int, str, int]]:
    names: dict[int, bytes] = {HEADER.size: qname_key}
    cnames: dict[bytes, bytes] = {}
    found: list[tuple[bytes, int, str, int]] = []
    end = len(data)
    for _ in range(ancount):
        try:
            if data[offset : offset + 2] == _POINTER_TO_QUESTION:
                owner, offset = qname_key, offset + 2  # the usual owner: a pointer to the question's name
            else:
                owner, offset = _read_name(data, offset, names)
            if offset + RR_FIXED.size > end:
                raise WireError("record header cut short")
            rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, offset)
            offset += RR_FIXED.size
            if offset + rdlength > end:
                raise WireError("record data cut short")
        except WireError:
            if truncated:
                break  # a truncated answer allows what it carries whole, nothing cut
            raise
        if rclass == CLASS_IN:
            if rtype == TYPE_A and rdlength == 4:
                found.append((owner, 4, socket.inet_ntop(socket.AF_INET, data[offset : offset + 4]), ttl))
            elif rtype == TYPE_AAAA and rdlength == 16:
                found.append((owner, 6, socket.inet_ntop(socket.AF_INET6, data[offset : offset + 16]), ttl))
            elif rtype == TYPE_CNAME:
                cnames[owner] = _read_name(data, offset, names)[0]
        offset += rdlength
    if not cnames:
        return [
            (version, address, ttl & 0x7FFFFFFF)
            for owner, version, address, ttl in found
            if owner == qname_key
        ]
    chain = {qname_key}
    current = qname_key
    for _ in range(MAX_CNAME_HOPS):
        target = cnames.get(current)
        if target is None or target in chain:
            break
        chain.add(target)
        current = target
    return [(version, address, ttl & 0x7FFFFFFF) for owner, version, address, ttl in found if owner in chain]


def _read_name(data: bytes, offset: int, cache: dict[int, bytes]) -> tuple[bytes, int]:
    """A possibly compressed name as its lower-cased uncompressed wire form, and the offset after it.

    Pointers must go strictly backwards, which with the hop limit rules out loops.
    """
    start = offset
    parts: list[bytes] = []
    total = 1
    end_offset = -1
    hops = 0
    limit = offset
    end = len(data)
    while True:
        if offset >= end:
            raise WireError("name runs past the end of the message")
        length = data[offset]
        if length == 0:
            if end_offset < 0:
                end_offset = offset + 1
            break
        if length & 0xC0 == 0xC0:
            if offset + 1 >= end:
                raise WireError("compression pointer cut short")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if end_offset < 0:
                end_offset = offset + 2
            cached = cache.get(target)
            if cached is not None:
                parts.append(cached[:-1])
                total += len(cached) - 1
                break
            hops += 1
            if target >= limit or hops > MAX_POINTER_HOPS:
                raise WireError("compression pointer does not point backwards")
            offset = limit = target
            continue
        if length & 0xC0:
            raise WireError("extended label type")
        total += length + 1
        if total > MAX_NAME_WIRE:
            raise WireError("name longer than 255 octets")
        parts.append(data[offset : offset + 1 + length])
        offset += 1 + length
    if total > MAX_NAME_WIRE:
        raise WireError("name longer than 255 octets")
    key = b"".join(parts).lower() + b"\x00"
    cache[start] = key
    return key, end_offset


def with_id(message: bytes, ident: int) -> bytes:
    return ident.to_bytes(2, "big") + message[2:]


def error_response(query: Query, rcode: int) -> bytes:
    """An answer to `query` carrying only its question and `rcode` (SERVFAIL when enforcement fails)."""
    flags = FLAG_QR | (query.flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | rcode
    return HEADER.pack(query.id, flags, 1, 0, 0, 0) + query.question


def formerr_for(data: bytes) -> bytes | None:
    """FORMERR for a message too broken to parse, if at least its header can be answered."""
    if len(data) < HEADER.size:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    if flags & FLAG_QR:
        return None  # never answer a response: that is how reflection loops start
    return HEADER.pack(ident, FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | RCODE_FORMERR, 0, 0, 0, 0)
