"""How long the cyclic garbage collector stops the agent: each collection's pause, by generation.

A collection runs inside whatever allocation crossed the threshold, so it stops the event loop, and
every answer read or held at that moment waits for it: the collector is part of the latency tail
(docs/benchmarks.md). The hook is gc.callbacks, called at the start and the stop of each collection:
two clock reads per collection, nothing per answer.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from fqdn_policy.ops.histogram import Histogram


class CollectorPauses:
    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.histogram = Histogram()  # seconds each collection stopped the agent
        # Collections by generation; a collection of generation n also collects the younger ones.
        self.by_generation = [0, 0, 0]
        self.longest = 0.0
        self._clock = clock
        self._started: float | None = None

    def install(self) -> None:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        if self._started is None:  # installed during a collection: its start was not seen
            return
        pause = self._clock() - self._started
        self._started = None
        self.histogram.observe(pause)
        self.by_generation[info["generation"]] += 1
        self.longest = max(self.longest, pause)
