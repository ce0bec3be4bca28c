"""What the entry budgets evicted, per pod: the counter behind
`fqdn_policy_budget_evictions_total{pod,budget}` and the rate-limited `dns.budget_exceeded` lines.

One line per pod at most every LINE_SECONDS carries the counts since its last line, never one per name:
a pod flooding unique names evicts an entry per answer. The first eviction of a quiet spell is logged
at once; what follows within the interval is counted and goes out with the next line, written by the
next eviction after the interval or by `due` (the agent's log flush task asks it twice a second).
"""

from __future__ import annotations

from typing import Any

LINE_SECONDS = 10.0


class BudgetReport:
    def __init__(self, line_seconds: float = LINE_SECONDS) -> None:
        self.line_seconds = line_seconds
        self.evictions: dict[tuple[str, str], int] = {}  # (pod, budget) -> evicted since start
        self._pending: dict[str, dict[str, int]] = {}  # pod -> budget -> evicted since its last line
        self._last_line: dict[str, float] = {}  # pod -> when its last line was written

    def record(self, pod: str, budget: str, count: int, now: float) -> bool:
        """Count `count` entries of `pod` evicted for `budget`; whether a line for the pod is due now."""
        key = (pod, budget)
        self.evictions[key] = self.evictions.get(key, 0) + count
        pending = self._pending.setdefault(pod, {})
        pending[budget] = pending.get(budget, 0) + count
        last = self._last_line.get(pod)
        return last is None or now - last >= self.line_seconds

    def line(self, pod: str, now: float) -> dict[str, Any] | None:
        """The pod's line: what was evicted since its last one, and since start, by budget."""
        pending = self._pending.pop(pod, None)
        if not pending:
            return None
        self._last_line[pod] = now
        totals = {b: n for (p, b), n in self.evictions.items() if p == pod}
        return {"pod": pod, "evicted": pending, "evicted_total": totals}

    def due(self, now: float) -> list[dict[str, Any]]:
        """Lines of the pods whose counts waited out their interval."""
        ready = [
            pod
            for pod in self._pending
            if now - self._last_line.get(pod, -self.line_seconds) >= self.line_seconds
        ]
        lines = [self.line(pod, now) for pod in ready]
        # A pod quiet for an interval starts afresh: its next eviction is logged at once.
        for pod in [
            p for p, t in self._last_line.items() if p not in self._pending and now - t >= self.line_seconds
        ]:
            del self._last_line[pod]
        return [line for line in lines if line is not None]
