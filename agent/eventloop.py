"""Which asyncio event loop the agent runs on.

uvloop (libuv, in C) by default: every answer costs several loop callbacks (the socket readers, the
write's completion, timers), and uvloop's are several times cheaper than the pure-Python loop's
(docs/benchmarks.md). `--event-loop asyncio` keeps the standard loop, for debugging or a platform
without uvloop wheels; the agent uses nothing only one of them has.
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
