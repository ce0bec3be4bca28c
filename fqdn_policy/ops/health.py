"""Readiness: what the agent has observed about itself, and whether that makes it fit to serve.

Pure bookkeeping with `now` passed in. The agent records what its own loops already do (start, the
watchdog's table check, reloads, repairs, the forwarder's answer and timeout counts at each watchdog
tick), so readiness costs the query path nothing. /readyz asks `problems(now)`; an empty list is ready.

Upstream reachability is passive: the agent is not ready while, over the last UPSTREAM_WINDOW seconds,
attempts timed out and none was answered. An idle agent with no evidence either way stays ready (an
active probe would send queries upstream on every check, for every node, for no user).
"""

from __future__ import annotations

from dataclasses import dataclass, field

UPSTREAM_WINDOW = 10.0
# The watchdog's check is "recent" within this many of its intervals (plus a second of slack): a
# watchdog stuck behind a hung kernel call makes the agent unready even though the loop still answers.
WATCHDOG_STALE_INTERVALS = 3


@dataclass(slots=True)
class Health:
    watchdog_interval: float = 1.0
    started_at: float | None = None
    table_present: bool | None = None  # None until the first watchdog check
    table_checked_at: float | None = None
    reloads: dict[str, int] = field(default_factory=lambda: {"ok": 0, "apply_failed": 0})
    repairs: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    last_answer_at: float | None = None
    last_timeout_at: float | None = None
    _answered: int = 0
    _timeouts: int = 0

    def record_start(self, now: float) -> None:
        self.started_at = now  # a policy is loaded: the agent refuses to start without one
        self.table_present = True  # the start transaction just created or adopted it
        self.table_checked_at = now

    def record_table_check(self, present: bool, now: float) -> None:
        self.table_present = present
        self.table_checked_at = now

    def record_reload(self, result: str) -> None:
        self.reloads[result] += 1

    def record_repair(self, ok: bool, now: float) -> None:
        self.repairs["ok" if ok else "failed"] += 1
        if ok:
            self.record_table_check(True, now)

    def record_upstream(self, answered: int, timeouts: int, now: float) -> None:
        """The forwarder's cumulative counts; growth since the previous call is what happened since."""
        if answered > self._answered:
            self.last_answer_at = now
        if timeouts > self._timeouts:
            self.last_timeout_at = now
        self._answered, self._timeouts = answered, timeouts

    def upstream_reachable(self, now: float) -> bool:
        timed_out_recently = (
            self.last_timeout_at is not None and now - self.last_timeout_at <= UPSTREAM_WINDOW
        )
        answered_recently = self.last_answer_at is not None and now - self.last_answer_at <= UPSTREAM_WINDOW
        return answered_recently or not timed_out_recently

    def problems(self, now: float) -> list[str]:
        """Why the agent is not ready; empty when it is."""
        if self.started_at is None:
            return ["starting: policy, table and listeners not set up yet"]
        out = []
        if not self.table_present:
            out.append("nftables table or chain missing (the watchdog is repairing it)")
        stale_after = WATCHDOG_STALE_INTERVALS * self.watchdog_interval + 1.0
        if self.table_checked_at is None or now - self.table_checked_at > stale_after:
            out.append(f"the table watchdog has not completed a check in {stale_after:g} s")
        if not self.upstream_reachable(now):
            out.append(f"no upstream answered in the last {UPSTREAM_WINDOW:g} s while attempts timed out")
        return out
