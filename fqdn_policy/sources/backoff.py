"""Capped exponential backoff with jitter, for reconnecting to the API server. Pure: the random source
is passed in.

Jitter matters here: when an API server restarts, every node's agent loses its watches at the same
moment, and without it they would all come back in lockstep. Each delay is drawn from [d/2, d] where d
doubles from `initial` up to `cap` (client-go's reflector backs off the same way, 0.8 s to 30 s; a
shorter cap here because a node's pods should see policy changes soon after the server is back).
"""

from __future__ import annotations

import random
from collections.abc import Callable

DEFAULT_INITIAL = 0.5
DEFAULT_CAP = 10.0


class Backoff:
    def __init__(
        self,
        initial: float = DEFAULT_INITIAL,
        cap: float = DEFAULT_CAP,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt, after one more failure."""
        ceiling = min(self.cap, self.initial * 2 ** min(self.failures, 32))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self.rand())

    def reset(self) -> None:
        self.failures = 0
