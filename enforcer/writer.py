"""SetWriter: every kernel write goes through here, in order, as few transactions as possible.

Group commit per burst: requests made while the loop handles a burst of answers queue up, and one
libnftables call after the burst (or at the end of the loop turn) writes them all (its fixed cost,
~0.2 ms, is far above its per-element cost). The call runs on the loop thread: a writer thread
measured worse, because the thread must win the GIL back from a busy loop (up to the 5 ms switch
interval) after every call.

If a combined transaction fails, each request is retried on its own, so one bad request (say, a delete
of an element the kernel already expired) fails only itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from enforcer.nft import Nft, NftError
from enforcer.ruleset import Command

T = TypeVar("T")
Done = Callable[[Exception | None], None]


@dataclass(slots=True)
class _Request:
    commands: list[Command]
    done: Done


@dataclass(slots=True)
class WriterStats:
    transactions: int = 0
    requests: int = 0
    failures: int = 0
    last_batch: int = 0
    last_seconds: float = 0.0


class SetWriter:
    def __init__(
        self, nft_factory: Callable[[], Nft] = Nft, on_latency: Callable[[float], None] | None = None
    ) -> None:
        """`on_latency(seconds)` is told how long each libnftables transaction took (for metrics)."""
        self._nft: Nft | None = None
        self._on_latency = on_latency
        self._factory = nft_factory
        self._queue: list[_Request] = []
        self._scheduled = False
        self.stats = WriterStats()

    def submit(self, commands: list[Command], done: Done) -> None:
        """Queue commands; `done(None)` runs once they are in the kernel, else `done(error)`."""
        self._queue.append(_Request(commands, done))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def write(self, commands: list[Command]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: Exception | None) -> None:
            if not future.done():
                future.set_exception(error) if error else future.set_result(None)

        self.submit(commands, done)
        await future

    async def call(self, fn: Callable[[Nft], T]) -> T:
        """Run `fn` with the writer's libnftables context, after everything queued before it."""
        await self.write([])  # a barrier: resolves when all earlier requests are done
        return fn(self._context())

    def _context(self) -> Nft:
        if self._nft is None:
            self._nft = self._factory()
        return self._nft

    def flush(self) -> None:
        """Write what is queued now, without waiting for the end of the loop turn (the forwarder calls
        this after each burst of upstream answers, so an answer is held for its write, not for the
        rest of the turn). The call already scheduled then finds nothing to do."""
        if self._queue:
            self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        outcomes = self._apply(batch)
        self.stats.transactions += 1
        self.stats.requests += len(batch)
        self.stats.last_batch = len(batch)
        for request, outcome in zip(batch, outcomes, strict=True):
            if outcome is not None:
                self.stats.failures += 1
            request.done(outcome)

    def _apply(self, batch: list[_Request]) -> list[Exception | None]:
        started = time.perf_counter()
        nft = self._context()
        commands = [c for request in batch for c in request.commands]
        try:
            nft.run(commands)
            outcomes: list[Exception | None] = [None] * len(batch)
        except NftError as error:
            if len(batch) == 1:
                outcomes = [error]
            else:
                outcomes = []
                for request in batch:
                    try:
                        nft.run(request.commands)
                        outcomes.append(None)
                    except NftError as single:
                        outcomes.append(single)
        except Exception as error:  # a broken binding must fail requests, not kill the agent
            outcomes = [error] * len(batch)
        self.stats.last_seconds = time.perf_counter() - started
        if self._on_latency is not None and commands:  # barriers (no commands) cost nothing to time
            self._on_latency(self.stats.last_seconds)
        return outcomes
