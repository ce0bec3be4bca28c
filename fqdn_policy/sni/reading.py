"""How the first-bytes parsers stop: more bytes are needed, or a decision without a name; and a
bounds-checked cursor over a message that is already whole."""

from __future__ import annotations


class Incomplete(Exception):
    """The bytes so far are a valid prefix; `wanted` is the length they must reach, when known."""

    def __init__(self, wanted: int | None) -> None:
        super().__init__(wanted)
        self.wanted = wanted


class Refused(Exception):
    """Decided, and no name can be vouched for: `kind` is what the bytes are ("tls", "http", "other")."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(kind, reason)
        self.kind = kind
        self.reason = reason


class Reader:
    """Reads fields of a whole message; running past its end is a malformed message, not a short one."""

    def __init__(self, data: bytes, kind: str, what: str) -> None:
        self._data = data
        self._offset = 0
        self._kind = kind
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def malformed(self, detail: str) -> Refused:
        return Refused(self._kind, f"malformed {self._what}: {detail}")

    def take(self, count: int, field: str) -> bytes:
        end = self._offset + count
        if end > len(self._data):
            raise self.malformed(f"{field} runs past the end")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, length_size: int, field: str) -> bytes:
        """A TLS vector: a `length_size`-octet length, then that many octets."""
        return self.take(self.uint(length_size, field), field)
