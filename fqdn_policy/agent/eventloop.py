"""Which asyncio event loop the agent runs on.

The standard loop by default. uvloop (libuv, in C) is an opt-in: its callbacks are cheaper, but in the
benchmark it was within the noise of the standard loop (+4 % QPS), and with it the first lookup after
the upstream came back got SERVFAIL in about 1 of 10 runs of
test_readyz_fails_while_the_upstream_is_dead_and_returns_when_it_answers (0 of 14 with the standard
loop; cause not found; docs/benchmarks.md). The agent uses nothing only one of them has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoop(StrEnum):
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if kind is EventLoop.ASYNCIO:
        return None  # asyncio.Runner's default: the standard selector loop
    import uvloop  # imported only when chosen, so `--event-loop asyncio` runs without it

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: EventLoop) -> T:
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
