"""SetWriter: every kernel write goes through here, in order, as few transactions as possible.

Group commit: while one transaction runs in the writer thread, new requests queue up; when it finishes,
everything queued goes in the next transaction. Under load one libnftables call carries many answers'
elements (its fixed cost is far above its per-element cost); idle, a request is written at once. The
call runs in a thread because libnftables blocks and ctypes releases the GIL meanwhile, so the event
loop keeps parsing and forwarding.

If a combined transaction fails, each request is retried on its own, so one bad request (say, a delete
of an element the kernel already expired) fails only itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

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
    def __init__(self, nft_factory: Callable[[], Nft] = Nft) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft-writer")
        self._nft: Nft | None = None
        self._factory = nft_factory
        self._queue: list[_Request] = []
        self._busy = False
        self.stats = WriterStats()

    def submit(self, commands: list[Command], done: Done) -> None:
        """Queue commands; `done(None)` runs on the loop once they are in the kernel, else done(error)."""
        self._queue.append(_Request(commands, done))
        if not self._busy:
            self._start()

    async def write(self, commands: list[Command]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: Exception | None) -> None:
            if not future.done():
                future.set_exception(error) if error else future.set_result(None)

        self.submit(commands, done)
        await future

    async def call(self, fn: Callable[[Nft], T]) -> T:
        """Run `fn` with the writer's libnftables context, after everything queued before it."""
        box: list[Any] = []
        await self.write([])  # a barrier: resolves when all earlier requests are done
        loop = asyncio.get_running_loop()
        box.append(await loop.run_in_executor(self._executor, lambda: fn(self._context())))
        return box[0]

    def _context(self) -> Nft:
        if self._nft is None:
            self._nft = self._factory()
        return self._nft

    def _start(self) -> None:
        batch, self._queue = self._queue, []
        self._busy = True
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._apply, batch)
        future.add_done_callback(lambda f: self._finish(batch, f))

    def _apply(self, batch: list[_Request]) -> list[Exception | None]:
        """Runs in the writer thread; returns one outcome per request."""
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
        except Exception as error:  # a broken binding must fail requests, not kill the writer
            outcomes = [error] * len(batch)
        self.stats.last_seconds = time.perf_counter() - started
        return outcomes

    def _finish(self, batch: list[_Request], future: asyncio.Future[list[Exception | None]]) -> None:
        try:
            outcomes = future.result()
        except Exception as error:
            outcomes = [error] * len(batch)
        self.stats.transactions += 1
        self.stats.requests += len(batch)
        self.stats.last_batch = len(batch)
        self._busy = False
        for request, outcome in zip(batch, outcomes, strict=True):
            if outcome is not None:
                self.stats.failures += 1
            request.done(outcome)
        if self._queue and not self._busy:
            self._start()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
