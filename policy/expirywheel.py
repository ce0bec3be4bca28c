"""Keys filed by the time slot their expiry falls in, so a sweep looks at what may have expired and not
at everything that lives.

The name manager holds one entry per live set element (100,000 in the benchmark); scanning all of them
every sweep stalled the event loop 60-90 ms at that size, and every answer with it. Here a sweep costs
what came due.

Filing is lazy: a key is filed once, when it appears (or when its expiry moves earlier), not on every
extension. When its slot comes due the owner looks at the key's current expiry: gone or past, it is
forgotten; still in the future, the owner files it again under that expiry. So an extended key is seen
about once per slot width it lives, however often it is answered. A key removed and added again may be
filed twice; both entries lead to the same check, and entries of one key that come due together are
merged.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_SLOT_SECONDS = 10.0


class ExpiryWheel(Generic[K]):
    def __init__(self, slot_seconds: float = DEFAULT_SLOT_SECONDS) -> None:
        if slot_seconds <= 0:
            raise ValueError(f"slot width must be positive, got {slot_seconds}")
        self.slot_seconds = slot_seconds
        self._slots: dict[int, list[K]] = {}
        self._order: list[int] = []  # a heap of the slots in _slots

    def __len__(self) -> int:
        """Entries filed and not yet due (a key filed twice counts twice)."""
        return sum(len(keys) for keys in self._slots.values())

    def file(self, key: K, until: float) -> None:
        """Look at `key` again once `until` has passed (at the end of its slot)."""
        slot = int(until // self.slot_seconds)
        keys = self._slots.get(slot)
        if keys is None:
            self._slots[slot] = [key]
            heapq.heappush(self._order, slot)
        else:
            keys.append(key)

    def due(self, now: float) -> list[K]:
        """Keys filed under slots that have ended by `now`, each once; the caller checks each key's
        current expiry (it may have moved) and files it again if it still lives."""
        out: dict[K, None] = {}
        order = self._order
        while order and (order[0] + 1) * self.slot_seconds <= now:
            out.update(dict.fromkeys(self._slots.pop(heapq.heappop(order))))
        return list(out)
