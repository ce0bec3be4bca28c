"""Per-client query rate limit: one noisy pod must not take the node's resolver from the others.

A token bucket per client address, refilled at `rate` per second up to `burst`. The table is bounded:
when it holds `max_clients` buckets, the full ones (idle clients) are dropped, which changes nothing
for them since a new bucket starts full.
"""

from __future__ import annotations

DEFAULT_RATE = 1000.0
DEFAULT_BURST = 2000.0
MAX_CLIENTS = 65536


class ClientRateLimiter:
    def __init__(
        self, rate: float = DEFAULT_RATE, burst: float = DEFAULT_BURST, max_clients: int = MAX_CLIENTS
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, list[float]] = {}  # client -> [tokens, last refill]
        self.limited = 0

    def allow(self, client: str, now: float) -> bool:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._forget_idle(now)
            self._buckets[client] = [self.burst - 1.0, now]
            return True
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            self.limited += 1
            return False
        bucket[0] = tokens - 1.0
        return True

    def _forget_idle(self, now: float) -> None:
        full = [
            c
            for c, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self.max_clients:
            self._buckets.clear()  # every client busy at once: start everyone over rather than grow
