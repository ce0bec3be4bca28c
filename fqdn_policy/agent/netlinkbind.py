"""Binding a netlink group or queue that only one socket per network namespace may hold.

During a rolling update the agent being replaced still holds it; the new one retries until the old one
exits (the kernel unbinds when its socket closes), and meanwhile the old one keeps reading. The NFLOG
drop reader and the verify-sni queue reader both bind this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

BIND_RETRY_SECONDS = 1.0


def bind_or_retry(
    bind: Callable[[], None],
    busy: tuple[type[OSError], ...],
    on_busy: Callable[[], None],
    on_error: Callable[[OSError], None],
    every: float = BIND_RETRY_SECONDS,
) -> asyncio.Task[None] | None:
    """Bind now; if another socket holds it, say so (`on_busy`) and return the task that retries every
    `every` seconds. Any other failure goes to `on_error`, once."""
    try:
        bind()
        return None
    except busy:
        on_busy()
    except OSError as error:
        on_error(error)
        return None
    return asyncio.ensure_future(_retry(bind, busy, on_error, every))


async def _retry(
    bind: Callable[[], None],
    busy: tuple[type[OSError], ...],
    on_error: Callable[[OSError], None],
    every: float,
) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            bind()
            return
        except busy:
            continue
        except OSError as error:
            on_error(error)
            return
