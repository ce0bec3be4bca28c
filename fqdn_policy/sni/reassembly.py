"""One flow's first payload bytes, in sequence order, from the segments the queue hands over.

Only a contiguous prefix is kept: the first payload segment seen anchors it and each later one must
continue it. A gap or a segment from before the anchor (reordering) is refused, and the caller denies
the connection: a verdict on bytes it has not seen in order would be a guess, and a client whose
packets are reordered retries. Retransmissions of bytes already held are normal (a lost ACK) and are
accepted when they agree; one that disagrees is an attempt to show the inspector one name and the
server another, and is refused.

Where the stream starts should come from the connection's SYN (its sequence number + 1), given as
`start`. Without it the first payload segment seen is taken as the start, and a client could send its
second segment first, dressed as a ClientHello for an allowed name: that would be inspected as the
stream's start while the server, once the real first segment arrives, reads another name.
"""

from __future__ import annotations

from fqdn_policy.sni.inspect import MAX_FIRST_BYTES

_SEQ_MOD = 1 << 32
_HALF = 1 << 31
# A ClientHello or request head takes one to three segments; eight leaves room for tiny segments
# (MSS clamping, a client writing byte by byte) while bounding the work one flow can ask for.
MAX_SEGMENTS = 8


class FirstBytes:
    """Bytes past MAX_FIRST_BYTES are not kept (inspection never reads them), so a flow's memory is
    bounded whatever its segments' sizes; a retransmission is compared on the bytes that are kept."""

    def __init__(self, start: int | None = None) -> None:
        """`start`: the sequence number of the stream's first byte (the SYN's + 1), when it is known."""
        self._start = None if start is None else start % _SEQ_MOD
        self._data = bytearray()
        self._received = 0  # bytes of stream covered so far, kept or not (past MAX_FIRST_BYTES)
        self.segments = 0  # segments that brought new bytes

    @property
    def data(self) -> bytes:
        return bytes(self._data)

    def add(self, seq: int, payload: bytes) -> bool:
        """Take one segment's payload; False when it does not continue the held prefix or disagrees
        with it, or when it would be segment MAX_SEGMENTS + 1."""
        if not payload:
            return True  # a bare ACK carries nothing to place
        if self._start is None:
            self._start = seq % _SEQ_MOD
        offset = (seq - self._start) % _SEQ_MOD
        if offset >= _HALF or offset > self._received:
            return False  # from before the first segment (reordered) or past a gap
        kept = self._data[offset : offset + len(payload)]
        if payload[: len(kept)] != kept:
            return False
        end = offset + len(payload)
        if end <= self._received:
            return True  # a retransmission of bytes already covered
        if self.segments == MAX_SEGMENTS:
            return False
        self.segments += 1
        if len(self._data) < MAX_FIRST_BYTES:
            self._data += payload[len(kept) : len(kept) + MAX_FIRST_BYTES - len(self._data)]
        self._received = end
        return True
