"""SetWriter: every kernel write goes through here, in order, as few transactions as possible.

Group commit per burst: requests made while the loop handles a burst of answers queue up, and one
transaction after the burst (or at the end of the loop turn) writes them all. The answers' allow-set
elements go as one nf_tables netlink batch (fqdn_policy.enforcer.elementsocket, ~20-40 µs); everything else
(tables, chains, rules, policy changes, barriers and `call`) through libnftables (~0.2 ms a call
whatever its size, because it rebuilds its cache each time). Both run on the loop thread, in the order
the requests came: a run of consecutive element requests is one batch, a run of commands one
libnftables call. (A writer thread measured worse: the thread must win the GIL back from a busy loop,
up to the 5 ms switch interval, after every call.)

Group commit holds the first answer of a burst while the rest are decided, which at a fixed rate (a
few answers at a time, each decided in tens of microseconds on a cold cache) was most of the tail of
the time answers are held. With `max_wait`, an element request queued when the oldest queued request
has waited that long flushes the queue at once, the new request included: batches stay large while
decisions are quick and shrink when they are slow.

If a combined transaction fails, each request is retried on its own, so one bad request (say, a delete
of an element the kernel already expired) fails only itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fqdn_policy.enforcer.elementsocket import ElementSocket
from fqdn_policy.enforcer.elementwire import ElementChange
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.enforcer.ruleset import Command
from fqdn_policy.policy.state.elements import Element, ElementWrite

T = TypeVar("T")
Done = Callable[[Exception | None], None]


class ElementWriter(Protocol):
    def write(self, changes: list[ElementChange], refresh: Refresh) -> None: ...


@dataclass(slots=True)
class _Request:
    commands: list[Command] | None  # for libnftables; None for an element change
    change: ElementChange | None
    done: Done

    @property
    def has_work(self) -> bool:
        """False for a barrier (`write([])`): it only waits for the requests before it."""
        return self.change is not None or bool(self.commands)


@dataclass(slots=True)
class WriterStats:
    transactions: int = 0
    requests: int = 0
    failures: int = 0
    last_batch: int = 0
    last_seconds: float = 0.0


class SetWriter:
    def __init__(
        self,
        nft_factory: Callable[[], Nft] = Nft,
        on_latency: Callable[[float], None] | None = None,
        elements_factory: Callable[[], ElementWriter] = ElementSocket,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_latency(seconds)` is told how long each transaction took (for metrics). `max_wait`
        (seconds): see the module's docstring; None waits for the end of the burst or loop turn."""
        self._nft: Nft | None = None
        self._elements: ElementWriter | None = None
        self._on_latency = on_latency
        self._factory = nft_factory
        self._elements_factory = elements_factory
        self._queue: list[_Request] = []
        self._scheduled = False
        self._max_wait = max_wait
        self._clock = clock
        self._oldest = 0.0  # when the oldest queued request was queued (kept only with max_wait)
        self.stats = WriterStats()
        # How an existing element gets a new timeout on this kernel: the agent sets it from
        # fqdn_policy.enforcer.kernelprobe before the first element write.
        self.refresh = Refresh.UPDATE

    def submit(self, commands: list[Command], done: Done) -> None:
        """Queue libnftables commands; `done(None)` runs once they are in the kernel, else `done(error)`."""
        self._enqueue(_Request(commands, None, done))

    def submit_elements(
        self, table: str, writes: Iterable[ElementWrite], deletes: Iterable[Element], done: Done
    ) -> None:
        """Queue allow-set element changes (deletes, then writes); `done` as for submit. With `max_wait`,
        this may write the queue, and call `done`, before it returns."""
        queued_before = bool(self._queue)
        self._enqueue(_Request(None, ElementChange(table, tuple(writes), tuple(deletes)), done))
        if queued_before and self._max_wait is not None and self._clock() - self._oldest >= self._max_wait:
            self._flush()

    def _enqueue(self, request: _Request) -> None:
        self._queue.append(request)
        if len(self._queue) == 1 and self._max_wait is not None:
            self._oldest = self._clock()
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
        self.stats.requests += len(batch)
        self.stats.last_batch = len(batch)
        for run in _runs(batch):
            # Each run's requests are told as soon as it is written: answers held for an element batch
            # are not held for a libnftables call queued after them.
            for request, outcome in zip(run, self._apply(run), strict=True):
                if outcome is not None:
                    self.stats.failures += 1
                request.done(outcome)

    def _apply(self, run: list[_Request]) -> list[Exception | None]:
        """One transaction for a run of requests of one kind; if it fails, each request is retried on
        its own. Barriers in the run (no commands) succeed with it."""
        work = [r for r in run if r.has_work]
        if not work:
            return [None] * len(run)
        started = time.perf_counter()
        if work[0].change is not None:
            writer = self._element_writer()
            changes = [r.change for r in work if r.change is not None]
            outcomes = _each_alone(changes, lambda cs: writer.write(cs, self.refresh), Exception)
        else:
            nft = self._context()
            parts = [r.commands for r in work if r.commands]
            try:
                outcomes = _each_alone(parts, lambda ps: nft.run([c for p in ps for c in p]), NftError)
            except Exception as error:  # a broken binding must fail requests, not kill the agent
                outcomes = [error] * len(work)
        self.stats.transactions += 1
        self.stats.last_seconds = time.perf_counter() - started
        if self._on_latency is not None:
            self._on_latency(self.stats.last_seconds)
        of_work = iter(outcomes)
        return [next(of_work) if r.has_work else None for r in run]

    def _element_writer(self) -> ElementWriter:
        if self._elements is None:
            self._elements = self._elements_factory()
        return self._elements


def _runs(batch: list[_Request]) -> list[list[_Request]]:
    """Consecutive requests of one kind; a barrier (no commands) joins whatever run it falls in."""
    runs: list[list[_Request]] = []
    for request in batch:
        if runs and (not request.has_work or (runs[-1][0].change is None) == (request.change is None)):
            runs[-1].append(request)
        else:
            runs.append([request])
    return runs


U = TypeVar("U")


def _each_alone(
    parts: list[U], apply: Callable[[list[U]], object], retried: type[Exception]
) -> list[Exception | None]:
    """Apply all parts as one transaction; if that fails with `retried`, each part on its own."""
    try:
        apply(parts)
        return [None] * len(parts)
    except retried as error:
        if len(parts) == 1:
            return [error]
    outcomes: list[Exception | None] = []
    for part in parts:
        try:
            apply([part])
            outcomes.append(None)
        except retried as single:
            outcomes.append(single)
    return outcomes
