"""Parses of repeated messages reused: the same bytes (past the 2-byte ID) parse to the same result.

`parse_query` and `parse_answer` depend on nothing but a message's bytes (and, for an answer, the
question it must answer), so when the same query or the same answer comes again byte for byte, the
earlier result is the result. Pods repeat their queries exactly; a forwarder with a constant TTL repeats
its answers exactly, and a caching upstream does within the same second. Reusing the very objects also
lets later stages recognise a repeat by identity and reuse what they derived from it: the question's
bytes keep their hash, and the policy gate remembers covered decisions per parsed answer
(fqdn_policy.policy.decide.decisioncache).

Memory is bounded three ways, because a parse kept costs ~400 bytes (a query and its answer ~800,
measured with tracemalloc): once a memo is half full, a message is kept only from its second sighting
(a message seen once leaves one bit in a bitmap), so names looked up once (a crawler, unique CDN
hostnames, the benchmark's fill) cannot push out the ones that repeat; each memo holds at most
`capacity` parses, starting again empty when full (a repeat then takes the full parse twice) rather than
paying for recency on every hit; and messages above MAX_REMEMBERED bytes are parsed every time. Below
half full there is nothing to protect, so every message is kept at once: after a start (or a reset)
the second sighting of a name is already a repeat.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from fqdn_policy.dnsproxy.wire import Answer, Query, parse_answer, parse_query

DEFAULT_CAPACITY = 32_768
MAX_REMEMBERED = 512  # bytes: A/AAAA answers and queries are far smaller
SEEN_BITS = 1 << 20  # first sightings remembered, as bits: up to `capacity` at a time, ~3 % of the bitmap

_new_tuple = tuple.__new__

K = TypeVar("K")
V = TypeVar("V")


class _Admission(Generic[K, V]):
    """Bounded key -> value, admitting a message at once while less than half full, and from then on
    only on its second sighting.

    Sightings are bits in a fixed bitmap indexed by the message's hash (128 KiB, where a set of the
    hashes cost ~60 bytes a message): a collision only admits a message on its first sighting, which
    costs room, never correctness. The bitmap starts again empty after `capacity` first sightings, so
    that it stays sparse.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: dict[K, V] = {}
        self._seen = bytearray(SEEN_BITS // 8)
        self._sightings = 0

    def admits(self, fingerprint: int) -> bool:
        """Whether a message with this fingerprint is to be kept: there is room to spare, or it was
        seen before. Records this sighting."""
        if len(self.entries) < self.capacity // 2:
            return True
        slot = fingerprint & (SEEN_BITS - 1)
        byte, bit = slot >> 3, 1 << (slot & 7)
        seen = self._seen
        if seen[byte] & bit:
            return True
        if self._sightings >= self.capacity:
            seen[:] = bytes(len(seen))
            self._sightings = 0
        seen[byte] |= bit
        self._sightings += 1
        return False

    def keep(self, key: K, value: V) -> None:
        if len(self.entries) >= self.capacity and key not in self.entries:
            self.entries.clear()
        self.entries[key] = value


class QueryMemo:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._kept: _Admission[bytes, tuple[int, bytes, str | None, int]] = _Admission(capacity)
        self.hits = 0

    def __len__(self) -> int:
        return len(self._kept.entries)

    def parse(self, data: bytes | bytearray) -> Query:
        """`parse_query(data)`, raising WireError as it does."""
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray can be neither a key nor kept: it may change
        body = data[2:]
        rest = self._kept.entries.get(body)
        if rest is not None:
            self.hits += 1
            return _new_tuple(Query, ((data[0] << 8) | data[1], *rest))  # Query(id, *rest), faster
        query = parse_query(data)
        if len(data) <= MAX_REMEMBERED and self._kept.admits(hash(body)):
            self._kept.keep(body, query[1:])  # everything but the ID
        return query


class AnswerMemo:
    """Keyed by the question, so a changed answer (a TTL counted down) replaces the kept one."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._kept: _Admission[bytes, tuple[bytes, Answer]] = _Admission(capacity)  # (body, parse)
        self.hits = 0

    def __len__(self) -> int:
        return len(self._kept.entries)

    def parse(self, data: bytes | bytearray, question: bytes) -> Answer:
        """`parse_answer(data, question)`, raising WireError as it does."""
        if type(data) is not bytes:
            data = bytes(data)
        kept = self._kept.entries.get(question)
        if kept is not None and len(data) == len(kept[0]) + 2 and data.endswith(kept[0]):
            self.hits += 1
            return kept[1]
        answer = parse_answer(data, question)
        if len(data) <= MAX_REMEMBERED:
            body = data[2:]
            if self._kept.admits(hash(body)):
                kept = answer._replace(repeatable=True)  # the object later identical answers will get
                self._kept.keep(question, (body, kept))
                return kept
        return answer
