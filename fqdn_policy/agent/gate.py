"""PolicyGate: the shell around the enforcement core (policy.decide.enforcement) that the DNS
server calls before releasing an answer.

It feeds the core each answer, carries out the effects it gets back (submits the kernel writes, releases
the answer once they are acknowledged, writes the log lines), and times how long answers were held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fqdn_policy.agent.decisionline import DecisionLines
from fqdn_policy.dnsproxy.codes import QTYPE_NAMES, qtype_name
from fqdn_policy.dnsproxy.server import Release
from fqdn_policy.dnsproxy.wire import Answer, Query
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.logs import get
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.policy.decide.decisioncache import DecisionCache
from fqdn_policy.policy.decide.enforcement import RELEASED, Effects, Enforcement, Notice, PendingWrite
from fqdn_policy.policy.decide.stats import EnforcementStats
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.budgetreport import BudgetReport

COUNTED_QTYPES = frozenset(QTYPE_NAMES)


def histogram_summary(histogram: Histogram) -> dict[str, Any]:
    """A latency histogram for a log line: count, p50/p99 (bucket upper bounds), the raw buckets."""
    snap = histogram.snapshot()
    return {
        "count": snap.count,
        "p50_ms": round(snap.quantile(0.5) * 1000, 3),
        "p99_ms": round(snap.quantile(0.99) * 1000, 3),
        "sum_s": round(snap.total, 6),
        "bounds_s": list(snap.bounds),
        "counts": list(snap.counts),
    }


class PolicyGate:
    def __init__(
        self,
        index: PolicyIndex,
        table: AllowTable,
        guard: AddressGuard,
        writer: SetWriter,
        nft_table: str,
        clock: Callable[[], float] = time.monotonic,
        on_write_failure: Callable[[Exception], None] | None = None,
        decision_log: DecisionLog | None = None,
        names: NameMemory | None = None,
    ) -> None:
        self.writer = writer
        self.nft_table = nft_table
        self.clock = clock
        self.on_write_failure = on_write_failure
        self.decision_log = decision_log if decision_log is not None else DecisionLog()
        self.core = Enforcement(index, table, guard, self.decision_log, names=names,
                                counted_qtypes=COUNTED_QTYPES)  # fmt: skip
        self.lines = DecisionLines(table.ttl)
        self.hold_time = Histogram()  # seconds an answer waited for its kernel write
        self.log = get("fqdn_policy.dns")

    # What the rest of the agent reads: the core's state, never a copy of it.
    @property
    def table(self) -> AllowTable:
        return self.core.table

    @property
    def stats(self) -> EnforcementStats:
        return self.core.stats

    @property
    def names(self) -> NameMemory:
        return self.core.names

    @property
    def budget_report(self) -> BudgetReport:
        return self.core.budget_report

    @property
    def covered(self) -> DecisionCache:
        return self.core.covered

    @covered.setter
    def covered(self, cache: DecisionCache) -> None:
        self.core.covered = cache

    @property
    def index(self) -> PolicyIndex:
        return self.core.index

    @index.setter
    def index(self, index: PolicyIndex) -> None:
        """Answers from now on are decided under `index` (the core voids what it remembered)."""
        self.core.on_policy(index)
        self.lines.clear()

    @property
    def guard(self) -> AddressGuard:
        return self.core.guard

    @guard.setter
    def guard(self, guard: AddressGuard) -> None:
        self.core.on_guard(guard)

    def admit(self, client_ip: str, transport: str, query: Query, answer: Answer, release: Release) -> None:
        """Decide `answer` and call `release` once what it allows is in the kernel: at once when
        nothing has to be written (a remembered repeat, most answers at saturation, allocates nothing)."""
        effects = self.core.on_answer(client_ip, transport, query, answer, self.clock())
        if effects is RELEASED:
            release(True)
            return
        self._notify(effects.notices)
        if effects.evict_deletes:
            self.writer.submit_elements(self.nft_table, (), effects.evict_deletes, self._evicted)
        write = effects.write
        if write is None:
            release(True)  # the log line is built after the answer is on its way, not before
            self._write_line(effects)
            return
        decided = write.decided

        def done(error: Exception | None) -> None:
            self.hold_time.observe(self.clock() - decided)
            self._finish(write, error, release)

        self.writer.submit_elements(self.nft_table, write.writes, write.deletes, done)

    def _finish(self, write: PendingWrite, error: Exception | None, release: Release) -> None:
        effects = self.core.on_write_done(write, error, self.clock())
        release(bool(effects.release))
        self._write_line(effects)
        if error is not None and self.on_write_failure is not None:
            self.on_write_failure(error)

    def _evicted(self, error: Exception | None) -> None:
        notice = self.core.on_evict_done(error, self.clock())
        if notice is not None:
            self._notify((notice,))

    def report_budget(self, now: float) -> None:
        """The budget lines whose interval is over (the agent's log flush task calls this)."""
        self._notify(self.core.on_tick(now))

    def _notify(self, notices: tuple[Notice, ...] | list[Notice]) -> None:
        for notice in notices:
            self.log.warning(notice.event, **notice.fields)

    def _write_line(self, effects: Effects) -> None:
        record = effects.line
        if record is not None:
            self.decision_log.write(self.lines.fields(record), failed=record.error is not None)

    def hold_summary(self) -> dict[str, Any]:
        return histogram_summary(self.hold_time)

    def failed(self, client_ip: str, transport: str, query: Query, reason: str) -> None:
        self.log.warning(
            "dns.servfail",
            client=client_ip,
            pod=self.core.pod_of(client_ip),
            qname=query.qname_text,
            qtype=qtype_name(query.qtype),
            transport=transport,
            reason=reason,
        )
