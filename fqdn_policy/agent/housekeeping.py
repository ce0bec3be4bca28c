"""The agent's periodic work besides answering: expiry sweeps, log flushes, and its stats line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fqdn_policy.agent.collector import WholeCollection
from fqdn_policy.agent.gate import PolicyGate, histogram_summary
from fqdn_policy.ops.collectorpauses import CollectorPauses
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.state.allowtable import AllowTable

# Keys of each kind per sweep slice: a 100,000-key mass expiry went in 31 ms slices at 5,000.
EXPIRY_SWEEP_LIMIT = 2_000
# A sweep costs what expired (fqdn_policy.policy.state.expirywheel), so it can run often.
EXPIRY_SWEEP_SECONDS = 5.0
LOG_FLUSH_SECONDS = 0.5
REPEAT_LINES_PER_SLICE = 1_000  # ~3.5 ms of writing between two chances for the loop to answer


async def sweep_expired(table: AllowTable, names: NameMemory, remember: Callable[[], bool]) -> None:
    """Forget what expired; while drops are reported (`remember()`), a later drop can still say which
    name expired."""
    while True:
        await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
        now = time.monotonic()
        while True:
            forgotten = table.forget_expired(now, EXPIRY_SWEEP_LIMIT)
            if remember():
                names.record_expired(forgotten.resolutions, now)
            if not forgotten.more:
                break
            await asyncio.sleep(0)  # a mass expiry goes in slices, with answers in between


async def flush_logs(decision_log: DecisionLog, gate: Callable[[], PolicyGate | None]) -> None:
    """Decision lines are written to a buffer; a crash loses at most this interval of them."""
    while True:
        await asyncio.sleep(LOG_FLUSH_SECONDS)
        now = time.monotonic()
        decision_log.report_folded(now)
        current = gate()
        if current is not None:
            current.report_budget(now)
        if decision_log.close_window_if_due(now):
            # A closed window's repeats go out in slices, with answers in between.
            while decision_log.write_closed(REPEAT_LINES_PER_SLICE):
                await asyncio.sleep(0)
        decision_log.flush()


def stats_line(
    gate: PolicyGate, nft_latency: Histogram, pauses: CollectorPauses, table: AllowTable
) -> dict[str, Any]:
    """The `agent.stats` line's fields: the gate's hold-time histogram, cumulative since start, so two
    lines give the exact histogram of the time between."""
    return {
        "hold_time": gate.hold_summary(),
        "nft_call_time": histogram_summary(nft_latency),
        "gc_pauses": {
            **histogram_summary(pauses.histogram),
            "by_generation": list(pauses.by_generation),
            "longest_ms": round(pauses.longest * 1000, 3),
        },
        "elements": len(table),
    }


def log_whole_collection(log: Any, result: WholeCollection) -> None:
    log.info(
        "gc.whole_collection",
        seconds=round(result.seconds, 4),
        unreachable=result.collected,
        allocated_blocks_before=result.blocks_before,
        allocated_blocks_after=result.blocks_after,
    )
