"""PolicyGate: the shell around policy.decide.decision that the DNS server calls before releasing an answer.

It turns a decision into a kernel write (through the SetWriter), releases the answer only after the
write is acknowledged, and writes the decision's log line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fqdn_policy.dnsproxy.server import Release
from fqdn_policy.dnsproxy.wire import Answer, Query
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.logs import QTYPE_NAMES, get, qtype_name, rcode_name
from fqdn_policy.ops.budgetreport import BudgetReport
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.policy.decide.decision import AnsweredLookup, Decision, Outcome, decide
from fqdn_policy.policy.decide.decisioncache import DecisionCache, Remembered
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import NameMatch, PolicyIndex
from fqdn_policy.policy.model import grant_text
from fqdn_policy.policy.state.allowtable import AllowTable, Plan


@dataclass(slots=True)
class GateStats:
    # (outcome, qtype, upstream rcode) -> answered lookups: one dict increment per answer, read (and
    # labelled) only when metrics are scraped. Types outside QTYPE_NAMES count under 0, so a client
    # sending every type number cannot grow the dict past a few hundred keys.
    lookups: dict[tuple[str, int, int], int] = field(default_factory=dict)
    write_failures: int = 0
    elements_written: int = 0
    held: int = 0  # answers waiting for their kernel write right now
    remembered: int = 0  # answers released on a remembered decision (fqdn_policy.policy.decide.decisioncache)
    evict_delete_failures: int = 0  # budget evictions' element deletes the kernel refused

    def by_outcome(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for (outcome, _, _), n in self.lookups.items():
            out[outcome] += n
        return out


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


# Log lines keep the text of this many distinct matches (a few hundred bytes each) before starting over.
MATCH_TEXTS = 4096

# Read per answer; an enum member is slow to read in Python 3.11 (a descriptor call).
_ALLOWED = Outcome.ALLOWED
_NOT_ALLOWED = Outcome.NOT_ALLOWED


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
        self._index = index
        self.table = table
        self.guard = guard
        self.writer = writer
        self.nft_table = nft_table
        self.clock = clock
        self.on_write_failure = on_write_failure
        self.stats = GateStats()
        self.hold_time = Histogram()  # seconds an answer waited for its kernel write
        self.log = get("fqdn_policy.dns")
        self.decision_log = decision_log if decision_log is not None else DecisionLog()
        # Answers to names no rule allows, so a later drop can say which name the pod had looked up.
        self.names = names if names is not None else NameMemory()
        # Repeats of an answer already covered skip `decide` (see policy.decide.decisioncache for when).
        self.covered = DecisionCache()
        self.budget_report = BudgetReport()
        self._delete_failures_logged = (-math.inf, 0)  # when the last such line went, failures then
        self._counter_keys: dict[tuple[str, int, int], tuple[str, int, int]] = {}
        self._match_texts: dict[int, tuple[NameMatch, list[str], list[str]]] = {}

    @property
    def index(self) -> PolicyIndex:
        return self._index

    @index.setter
    def index(self, index: PolicyIndex) -> None:
        """Answers from now on are decided under `index`. The remembered decisions are void, and are
        dropped now, not left holding the old index (a thousand policies' rule sets) until replaced."""
        self._index = index
        self.covered.clear()
        self._match_texts.clear()  # the old rule sets' matches: their text is no longer asked for

    def admit_repeat(self, client_ip: str, query: Query, answer: Answer) -> bool:
        """Whether `answer` is a repeat whose decision is remembered (policy.decide.decisioncache) and that
        gets no log line: then its bookkeeping is done and the caller releases it at once, with no write
        and no callback. False means nothing was done or recorded: the caller calls `admit`."""
        if not answer.repeatable:
            return False
        decided = self.clock()
        table = self.table
        hit = self.covered.get(
            client_ip, query.question, answer, self._index, self.guard, table.removals, decided
        )
        if hit is None or not self.decision_log.counted_repeat(
            client_ip, hit.qname, query.qtype, hit.outcome, decided
        ):
            return False  # the first repeat of a log window gets a line naming the rules: `admit`
        stats = self.stats
        stats.remembered += 1
        stats.lookups[hit.counter] += 1
        renew = hit.renew
        if hit.outcome is not _ALLOWED:
            if renew:
                self.names.record_denied(hit.pod, hit.qname, renew, decided)  # type: ignore[arg-type]
        elif len(renew) == 2:
            table.resolutions.extend(hit.pod, hit.qname, renew[0], decided + renew[1])  # type: ignore[arg-type, operator]
        else:
            extended = {renew[i]: decided + renew[i + 1] for i in range(0, len(renew), 2)}
            table.resolutions.record(hit.pod, hit.qname, extended)  # type: ignore[arg-type]
        return True

    def admit(
        self,
        client_ip: str,
        transport: str,
        query: Query,
        answer: Answer,
        release: Release,
        *,
        repeat_checked: bool = False,
    ) -> None:
        """Decide `answer` and call `release` once what it allows is in the kernel. `repeat_checked`:
        the caller has just asked `admit_repeat`, which said no; it is not asked twice."""
        if not repeat_checked and self.admit_repeat(client_ip, query, answer):
            release(True)
            return
        decided = self.clock()
        table = self.table
        lookup = AnsweredLookup(client_ip, query.qname, query.qtype, answer.rcode, answer.addresses)
        decision = decide(lookup, self._index, table, self.guard, decided)
        plan = decision.plan
        if plan is not None and plan.evictions:
            self._evict(plan, decided)
        key = (decision.outcome.value, query.qtype if query.qtype in QTYPE_NAMES else 0, answer.rcode)
        lookups = self.stats.lookups
        lookups[key] = lookups.get(key, 0) + 1
        denied: tuple[str, ...] = ()
        if decision.outcome is _NOT_ALLOWED and lookup.addresses and decision.pod and lookup.qname:
            denied = tuple(a[1] for a in lookup.addresses)
            self.names.record_denied(decision.pod, lookup.qname, denied, decided)
        if plan is None or not decision.needs_write:
            if plan is not None:
                table.commit(plan)
            # Only an answer the parse memo keeps can come again as this very object; remembering
            # any other would cost an entry per answer that no repeat can ever use.
            if answer.repeatable:
                covered_until = plan.covered_until if plan is not None else math.inf
                self._remember(client_ip, query, answer, decision, key, denied, decided, covered_until)
            release(True)  # the log line is built after the answer is on its way, not before
            self._log(lookup, query, transport, decision)
            return

        index, guard, generation = self._index, self.guard, table.generation(plan.pod)

        def done(error: Exception | None) -> None:
            self.stats.held -= 1
            self.hold_time.observe(self.clock() - decided)
            if error is None:
                self.table.commit(plan)
                self.stats.elements_written += len(plan.writes)
                # Once written, the answer is covered: its repeats need not be decided again, unless
                # the policy changed or an element may have gone while the write was out.
                if (
                    answer.repeatable
                    and not plan.deletes
                    and not plan.evicted
                    and index is self._index
                    and guard is self.guard
                    and generation == self.table.generation(plan.pod)
                ):
                    self._remember(client_ip, query, answer, decision, key, denied, decided,
                                   plan.covered_after_write)  # fmt: skip
                release(True)
                self._log(lookup, query, transport, decision)
            else:
                self.table.release(plan)
                self.stats.write_failures += 1
                release(False)
                self._log(lookup, query, transport, decision, error=str(error))
                if self.on_write_failure is not None:
                    self.on_write_failure(error)

        self.stats.held += 1
        table.hold(plan)
        self.writer.submit_elements(self.nft_table, plan.writes, plan.deletes, done)

    def _evict(self, plan: Plan, now: float) -> None:
        """Apply what an entry budget takes (policy.state.budget): the bookkeeping now, the elements in a
        request of their own before the answer's (its failure must not fail the answer), the victims'
        remembered decisions dropped (a repeat would renew an entry that is gone), counted and logged."""
        self.table.evict(plan)
        counts: dict[tuple[str, str], int] = {}
        for e in plan.evictions:
            counts[(e.pod, e.budget)] = counts.get((e.pod, e.budget), 0) + 1
        due = {pod for (pod, budget), n in counts.items() if self.budget_report.record(pod, budget, n, now)}
        for pod in {pod for pod, _ in counts}:
            client = self._index.pod(pod)
            for ip in client.pod.ips if client is not None else ():
                self.covered.forget(ip)
        for pod in sorted(due):
            self._log_budget(self.budget_report.line(pod, now))
        if plan.evict_deletes:
            self.writer.submit_elements(self.nft_table, (), plan.evict_deletes, self._evicted)

    def _evicted(self, error: Exception | None) -> None:
        """An eviction's deletes are done. Refused (say, an element the kernel had already expired), the
        elements are left to their timeout: what the bookkeeping forgot stays allowed a little longer."""
        if error is None:
            return
        self.stats.evict_delete_failures += 1
        last, failures = self._delete_failures_logged
        now = self.clock()
        if now - last >= self.budget_report.line_seconds:
            self._delete_failures_logged = (now, self.stats.evict_delete_failures)
            self.log.warning(
                "dns.budget_delete_failed",
                error=str(error),
                failures=self.stats.evict_delete_failures - failures,
                effect="the evicted elements stay until their timeout",
            )

    def report_budget(self, now: float) -> None:
        """The budget lines whose interval is over (the agent's log flush task calls this)."""
        for line in self.budget_report.due(now):
            self._log_budget(line)

    def _log_budget(self, line: dict[str, Any] | None) -> None:
        if line is None:
            return
        resolutions, budget = self.table.resolutions, self.table.budget
        self.log.warning(
            "dns.budget_exceeded",
            **line,
            entries=resolutions.entries_of(line["pod"]),
            max_entries_per_pod=budget.per_pod,
            agent_entries=resolutions.total,
            max_entries=budget.total,
        )

    def _remember(
        self,
        client_ip: str,
        query: Query,
        answer: Answer,
        decision: Decision,
        counter: tuple[str, int, int],
        denied: tuple[str, ...],
        decided: float,
        covered_until: float,
    ) -> None:
        """A decision with nothing (more) to write, for the repeats of this answer until
        `covered_until` (fqdn_policy.policy.decide.decisioncache)."""
        counter = self._counter_keys.setdefault(counter, counter)  # one tuple shared by the entries
        plan = decision.plan
        if plan is not None:
            pod, qname = plan.pod, plan.qname
            renew = tuple(x for dst, until in plan.resolved.items() for x in (dst, round(until - decided)))
        else:
            pod, qname, renew = decision.pod, query.qname, denied
        entry = Remembered(answer, covered_until, self._index, self.guard, self.table.removals, counter,
                           decision.outcome, pod, qname, renew)  # fmt: skip
        self.covered.put(client_ip, query.question, entry)

    def _match_text(self, match: NameMatch) -> tuple[list[str], list[str]]:
        """A match's rules and grants as log lines show them. A rule set shares one NameMatch among the
        names that match the same rules (every name under one pattern), so the text is made once per
        match rather than once per line. Keyed by id (hashing a NameMatch hashes its rules): the entry
        holds its match, so no other object can have that id while the entry exists."""
        cached = self._match_texts.get(id(match))
        if cached is not None:
            return cached[1], cached[2]
        rules = [str(r) for r in match.rules]
        grants = sorted(grant_text(g) for g in match.grants)
        if len(self._match_texts) >= MATCH_TEXTS:
            self._match_texts.clear()
        self._match_texts[id(match)] = (match, rules, grants)
        return rules, grants

    def hold_summary(self) -> dict[str, Any]:
        return histogram_summary(self.hold_time)

    def failed(self, client_ip: str, transport: str, query: Query, reason: str) -> None:
        client = self.index.client(client_ip)
        self.log.warning(
            "dns.servfail",
            client=client_ip,
            pod=client.pod.key if client else None,
            qname=query.qname_text,
            qtype=qtype_name(query.qtype),
            transport=transport,
            reason=reason,
        )

    def _log(
        self,
        lookup: AnsweredLookup,
        query: Query,
        transport: str,
        decision: Decision,
        error: str | None = None,
    ) -> None:
        plan = decision.plan
        wrote = plan is not None and bool(plan.writes or plan.deletes)
        key = (lookup.client_ip, lookup.qname, lookup.qtype, decision.outcome)
        who = decision.pod or lookup.client_ip
        if not self.decision_log.wants(key, wrote, error is not None, self.clock(), who):
            return
        fields: dict[str, Any] = {
            "client": lookup.client_ip,
            "pod": decision.pod,
            "qname": query.qname_text,
            "qtype": qtype_name(lookup.qtype),
            "rcode": rcode_name(lookup.rcode),
            "transport": transport,
            "outcome": decision.outcome,  # a StrEnum: the line gets its text
        }
        match = decision.match
        if match.rules:
            fields["rules"], fields["grants"] = self._match_text(match)
        if plan is not None:
            fields["allowed"] = [
                {"address": a[1], "ttl": a[2], "timeout": self.table.ttl.timeout(a[2])}
                for a in lookup.addresses
                if a[1] in plan.resolved
            ]
            fields["elements_written"] = len(plan.writes)
            if plan.evicted:
                fields["evicted"] = plan.evicted
            if plan.over_budget:
                fields["over_budget"] = plan.over_budget
        if decision.guarded:
            fields["guarded"] = list(decision.guarded)
        if error is not None:
            fields["error"] = error
            fields["answer"] = "SERVFAIL"
        self.decision_log.write(fields, failed=error is not None)
