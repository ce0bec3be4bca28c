"""The agent's garbage-collection regime: two generations instead of CPython's three.

CPython moves what survives a young collection into a middle generation and scans that again after
every 20 young collections. For the agent, what survives is its state (allowed elements, remembered
decisions, parsed answers), which lives for minutes: each middle collection rescans hundreds of
thousands of such objects, a stop of 60-100 ms every ~20 young collections while answers are being
written (`python -m bench.collector`), and again and again in a steady state where new answers
replace expired ones.

Here what survives a young collection is frozen at once (`gc.freeze()`, which moves lists, not
objects): young collections stay short and nothing is scanned twice. Frozen objects are still freed
by reference counting, as nearly all of the agent's are; only reference cycles that outlive a young
collection (a TCP connection's stream objects, say) would stay. So the heap is collected whole, the
one long stop this regime has, when it has grown by a quarter since the last such collection (the rule
CPython applies to its oldest generation), and at most once a minute; each whole collection is logged
with its duration and what it freed. The heap's size is sys.getallocatedblocks() (0.3 ms at 1.8
million blocks), not gc.get_freeze_count(), which walks the frozen list (17 ms at 190,000 objects).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GROWTH = 0.25  # a whole collection once the heap has grown by this fraction
MIN_INTERVAL = 60.0  # seconds between two whole collections, however fast the heap grows
# A floor for the growth rule (allocator blocks; ~1.8 million with the benchmark's 1,000 policies and
# 100,000 elements), so a small heap is not collected whole for every few thousand objects.
MIN_GROWTH_BLOCKS = 250_000


def whole_collection_due(
    blocks: int, blocks_after_last: int, now: float, last: float, growth: float = GROWTH,
    min_interval: float = MIN_INTERVAL, min_blocks: int = MIN_GROWTH_BLOCKS,
) -> bool:  # fmt: skip
    """Whether the heap has grown enough, and long enough after the last whole collection."""
    grown = blocks - blocks_after_last
    return now - last >= min_interval and grown >= max(min_blocks, blocks_after_last * growth)


@dataclass(frozen=True, slots=True)
class WholeCollection:
    seconds: float
    collected: int  # unreachable objects found (cycles); 0 means nothing had leaked into the frozen heap
    blocks_before: int
    blocks_after: int


class CollectorRegime:
    def __init__(
        self,
        young: int,
        schedule: Callable[[Callable[[], None]], object],
        on_whole: Callable[[WholeCollection], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        """`young`: allocations between two young collections. `schedule(fn)` runs `fn` soon, outside
        the collector (a collection cannot start inside another's callback): the loop's call_soon.
        `on_whole` is told of each whole collection."""
        self.young = young
        self._schedule = schedule
        self._on_whole = on_whole
        self._clock = clock
        self.min_interval = min_interval
        self._blocks_after_last = 0
        self._last = 0.0
        self._scheduled = False
        self._saved: tuple[tuple[int, int, int], bool] | None = None
        self.whole_collections = 0

    def install(self) -> None:
        """Collect and freeze what exists now (the policy, the adopted elements), then collect young
        objects every `young` allocations and freeze their survivors."""
        self._saved = (gc.get_threshold(), gc.isenabled())
        gc.collect()
        gc.freeze()
        self._blocks_after_last = sys.getallocatedblocks()
        self._last = self._clock()
        gc.set_threshold(self.young, 20, 100)
        gc.enable()
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        """Stop freezing; the frozen heap goes back to the collector's oldest generation."""
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        if self._saved is not None:
            thresholds, enabled = self._saved
            gc.set_threshold(*thresholds)
            if not enabled:
                gc.disable()
            self._saved = None
        gc.unfreeze()

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 0:
            return
        gc.freeze()
        now, last, interval = self._clock(), self._last, self.min_interval
        if (
            not self._scheduled
            and now - last >= interval  # the clock first: counting blocks costs more
            and whole_collection_due(
                sys.getallocatedblocks(), self._blocks_after_last, now, last, min_interval=interval
            )
        ):
            self._scheduled = True
            self._schedule(self.collect_whole)

    def collect_whole(self) -> WholeCollection:
        """Collect everything, frozen or not, then freeze what survives."""
        self._scheduled = False
        before = sys.getallocatedblocks()
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        result = WholeCollection(time.perf_counter() - started, collected, before, sys.getallocatedblocks())
        self._blocks_after_last = result.blocks_after
        self._last = self._clock()
        self.whole_collections += 1
        if self._on_whole is not None:
            self._on_whole(result)
        return result
