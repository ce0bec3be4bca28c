"""A fixed-bucket latency histogram cheap enough for the per-answer path.

`observe` is one bisect and two additions: no locks, no allocation, no labels. Exposition (Prometheus
buckets, quantiles for the benchmark and the logs) reads the counts when asked, off the hot path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

# Upper bounds in seconds: 10 us to 10 s in 1-2-3-5 steps; the last bucket is +Inf. 200 us is a bound
# because the target for holding an answer for its write is p99 <= 0.2 ms (docs/benchmarks.md); 300 us
# because with 1-2-5 steps a p99 just over the target read as "<= 500 us", which says little.
DEFAULT_BOUNDS: tuple[float, ...] = (
    0.00001, 0.00002, 0.00003, 0.00005,
    0.0001, 0.0002, 0.0003, 0.0005,
    0.001, 0.002, 0.003, 0.005,
    0.01, 0.02, 0.03, 0.05,
    0.1, 0.2, 0.3, 0.5,
    1.0, 2.0, 3.0, 5.0,
    10.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, not cumulative; one more than bounds (+Inf)
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound) pairs, +Inf last: the Prometheus bucket series."""
        running, out = 0, []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the q-quantile: an upper estimate, never an under-report."""
        count = self.count
        if count == 0:
            return 0.0
        rank = q * count
        for bound, running in self.cumulative():
            if running >= rank:
                return bound
        return float("inf")  # pragma: no cover - the +Inf bucket always reaches count


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = DEFAULT_BOUNDS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be distinct and increasing")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total)
