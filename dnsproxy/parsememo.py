"""Parses of repeated messages reused: the same bytes (past the 2-byte ID) parse to the same result.

`parse_query` and `parse_answer` depend on nothing but a message's bytes (and, for an answer, the
question it must answer), so when the same query or the same answer comes again byte for byte, the
earlier result is the result. Pods repeat their queries exactly; a forwarder with a constant TTL repeats
its answers exactly, and a caching upstream does within the same second. Reusing the very objects also
lets later stages recognise a repeat by identity and reuse what they derived from it: the question's
bytes keep their hash, and the policy gate remembers covered decisions per parsed answer
(policy.decisioncache).

Both memos are bounded: at `capacity` keys they start again empty (a repeat then takes the full parse
once) rather than paying for recency on every hit, and messages above MAX_REMEMBERED bytes are parsed
every time.
"""

from __future__ import annotations

from dnsproxy.wire import Answer, Query, parse_answer, parse_query

DEFAULT_CAPACITY = 65_536
MAX_REMEMBERED = 512  # bytes: A/AAAA answers and queries are far smaller

_new_tuple = tuple.__new__


class QueryMemo:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: dict[bytes, tuple[int, bytes, str | None, int]] = {}  # all of a Query but its ID
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, data: bytes | bytearray) -> Query:
        """`parse_query(data)`, raising WireError as it does."""
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray can be neither a key nor kept: it may change
        body = data[2:]
        rest = self._entries.get(body)
        if rest is not None:
            self.hits += 1
            return _new_tuple(Query, ((data[0] << 8) | data[1], *rest))  # Query(id, *rest), faster
        query = parse_query(data)
        if len(data) <= MAX_REMEMBERED:
            if len(self._entries) >= self.capacity:
                self._entries.clear()
            self._entries[body] = query[1:]
        return query


class AnswerMemo:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: dict[bytes, tuple[bytes, Answer]] = {}
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, data: bytes | bytearray, question: bytes) -> Answer:
        """`parse_answer(data, question)`, raising WireError as it does."""
        if type(data) is not bytes:
            data = bytes(data)
        entry = self._entries.get(question)
        if entry is not None and len(data) == len(entry[0]) + 2 and data.endswith(entry[0]):
            self.hits += 1
            return entry[1]
        answer = parse_answer(data, question)
        if len(data) <= MAX_REMEMBERED:
            if len(self._entries) >= self.capacity and question not in self._entries:
                self._entries.clear()
            self._entries[question] = (data[2:], answer)
        return answer
