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

    def due(self, now: float, limit: int | None = None) -> list[K]:
        """Keys filed under slots that have ended by `now`, each once, at most `limit` of them (the
        rest stay filed for the next call: a mass expiry is spread over several calls instead of
        stalling one). The caller checks each key's current expiry (it may have moved) and files it
        again if it still lives."""
        out: dict[K, None] = {}
        order = self._order
        while order and (order[0] + 1) * self.slot_seconds <= now:
            keys = self._slots[order[0]]
            room = len(keys) if limit is None else limit - len(out)
            if room <= 0:
                break
            if room < len(keys):
                out.update(dict.fromkeys(keys[-room:]))
                del keys[-room:]
                break
            del self._slots[heapq.heappop(order)]
            out.update(dict.fromkeys(keys))
        return list(out)

    def has_due(self, now: float) -> bool:
        """Whether a slot that has ended by `now` still holds keys (a limited `due` left some)."""
        return bool(self._order) and (self._order[0] + 1) * self.slot_seconds <= now
