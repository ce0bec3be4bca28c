"""The enforcement core: one answered lookup in, what to do about it out. Sans-I/O.

In the style of h11 and aioquic: the shell (agent.gate) feeds events in and carries out the effects
it gets back; nothing here touches a socket, the kernel, a clock or a log stream.

- `on_answer(client, transport, query, answer, now)`: decide. The effects say whether the answer may
  go now, or which elements must be in the kernel first (`write`), which elements an entry budget took
  (`evict_deletes`, their own request), the decision's log record, and notices (budget lines).
- `on_write_done(write, error, now)`: the kernel acknowledged (or refused) a write; the effects say
  whether the held answer goes out as is or as SERVFAIL.
- `on_evict_done(error, now)`, `on_policy(index)`, `on_guard(guard)`, `on_tick(now)`.

A repeat whose decision is remembered (policy.decide.decisioncache) is the fast path: it is taken
inside `on_answer`, behind the same entry point, and returns the shared RELEASED effects. Remembered
decisions are checked against generation numbers, never object identity: the policy generation moves
with every `on_policy` and `on_guard`, the table's generation with every removal that can take an
element away before its expiry; an entry also records the answer's content (rcode, addresses and
TTLs) it was decided for.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

from fqdn_policy.policy.decide.decision import AnsweredLookup, Decision, Outcome, decide
from fqdn_policy.policy.decide.decisioncache import DecisionCache, Remembered
from fqdn_policy.policy.decide.stats import EnforcementStats
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.budgetreport import BudgetReport
from fqdn_policy.policy.state.elements import Element, Plan


class AskedQuery(Protocol):
    """What the core reads of a query (dnsproxy.wire.Query has these)."""

    @property
    def question(self) -> bytes: ...
    @property
    def qname(self) -> str | None: ...
    @property
    def qtype(self) -> int: ...


class UpstreamAnswer(Protocol):
    """What the core reads of an answer (dnsproxy.wire.Answer has these)."""

    @property
    def rcode(self) -> int: ...
    @property
    def addresses(self) -> tuple[tuple[int, str, int], ...]: ...
    @property
    def repeatable(self) -> bool: ...


class LinePolicy(Protocol):
    """Which decisions get a log line (ops.decisionlog.DecisionLog: repeats folded, a line rate per pod)."""

    def wants(self, key: tuple[Any, ...], wrote: bool, failed: bool, now: float, who: str = "") -> bool: ...

    def counted_repeat(self, client: str, qname: Any, qtype: int, outcome: Any, now: float) -> bool: ...


class Notice(NamedTuple):
    """A warning for the log that is not a decision line: (event, fields)."""

    event: str
    fields: dict[str, Any]


class LineRecord(NamedTuple):
    """A decision that gets a log line; the shell renders it (agent.decisionline)."""

    lookup: AnsweredLookup
    query: Any  # the asked query, for the name as the client spelled it
    transport: str
    decision: Decision
    error: str | None


class PendingWrite:
    """One answer held for its kernel write: what `on_write_done` needs to finish it."""

    __slots__ = ("answer", "client_ip", "counter", "decided", "decision", "denied", "generation",
                 "lookup", "plan", "query", "table_generation", "transport")  # fmt: skip

    def __init__(
        self,
        client_ip: str,
        transport: str,
        query: AskedQuery,
        answer: UpstreamAnswer,
        lookup: AnsweredLookup,
        decision: Decision,
        plan: Plan,
        counter: tuple[str, int, int],
        denied: tuple[str, ...],
        decided: float,
        generation: int,
        table_generation: int,
    ) -> None:
        self.client_ip, self.transport, self.query, self.answer = client_ip, transport, query, answer
        self.lookup, self.decision, self.plan, self.counter = lookup, decision, plan, counter
        self.denied, self.decided = denied, decided
        self.generation, self.table_generation = generation, table_generation

    @property
    def writes(self) -> list[Any]:
        return self.plan.writes

    @property
    def deletes(self) -> list[Element]:
        return self.plan.deletes


class Effects(NamedTuple):
    # True: the answer goes now; False: SERVFAIL now; None: after `write` is done (`on_write_done`).
    release: bool | None
    write: PendingWrite | None
    evict_deletes: list[Element] | tuple[()]  # an entry budget's element deletes: a request of their own
    line: LineRecord | None
    notices: tuple[Notice, ...] | list[Notice]


# The fast path's answer, shared: a remembered repeat allocates nothing.
RELEASED = Effects(True, None, (), None, ())

# Read per answer; an enum member is slow to read in Python 3.11 (a descriptor call).
_ALLOWED = Outcome.ALLOWED
_NOT_ALLOWED = Outcome.NOT_ALLOWED


class Enforcement:
    def __init__(
        self,
        index: PolicyIndex,
        table: AllowTable,
        guard: AddressGuard,
        lines: LinePolicy,
        *,
        names: NameMemory | None = None,
        budget_report: BudgetReport | None = None,
        covered: DecisionCache | None = None,
        counted_qtypes: frozenset[int] = frozenset(),
    ) -> None:
        self.index = index
        self.table = table
        self.guard = guard
        self.lines = lines
        # Answers to names no rule allows, so a later drop can say which name the pod had looked up.
        self.names = names if names is not None else NameMemory()
        self.budget_report = budget_report if budget_report is not None else BudgetReport()
        self.covered = covered if covered is not None else DecisionCache()
        self.stats = EnforcementStats()
        # Query types counted under their own number (those the logs and metrics name); others count
        # under 0, so a client sending every type number cannot grow the counters past a few keys.
        self.counted_qtypes = counted_qtypes
        self.generation = 0  # moves with the policy index and the address guard
        self._counter_keys: dict[tuple[str, int, int], tuple[str, int, int]] = {}
        self._delete_failures_logged = (-math.inf, 0)  # when the last such notice went, failures then

    # ---------------------------------------------------------------- events

    def on_policy(self, index: PolicyIndex) -> None:
        """Answers from now on are decided under `index`. The remembered decisions are void and dropped
        now, not left holding the old index until replaced; writes still out are not remembered."""
        self.index = index
        self._void()

    def on_guard(self, guard: AddressGuard) -> None:
        self.guard = guard
        self._void()

    def on_answer(
        self, client_ip: str, transport: str, query: AskedQuery, answer: UpstreamAnswer, now: float
    ) -> Effects:
        if answer.repeatable and self._repeat(client_ip, query, answer, now):
            return RELEASED
        table = self.table
        lookup = AnsweredLookup(client_ip, query.qname, query.qtype, answer.rcode, answer.addresses)
        decision = decide(lookup, self.index, table, self.guard, now)
        plan = decision.plan
        evict_deletes: list[Element] | tuple[()] = ()
        notices: list[Notice] | tuple[()] = ()
        if plan is not None and plan.evictions:
            evict_deletes, notices = plan.evict_deletes, self._evict(plan, now)
        counter = (
            decision.outcome.value,
            query.qtype if query.qtype in self.counted_qtypes else 0,
            answer.rcode,
        )
        lookups = self.stats.lookups
        lookups[counter] = lookups.get(counter, 0) + 1
        denied: tuple[str, ...] = ()
        if decision.outcome is _NOT_ALLOWED and lookup.addresses and decision.pod and lookup.qname:
            denied = tuple(a[1] for a in lookup.addresses)
            self.names.record_denied(decision.pod, lookup.qname, denied, now)
        if plan is None or not (plan.writes or plan.deletes):
            if plan is not None:
                table.commit(plan)
            # Only an answer the parse memo keeps can come again as this very object; remembering
            # any other would cost an entry per answer that no repeat is likely to use.
            if answer.repeatable:
                until = plan.covered_until if plan is not None else math.inf
                self._remember(client_ip, query, answer, decision, counter, denied, now, until)
            line = self._line(lookup, query, transport, decision, None, now)
            return Effects(True, None, evict_deletes, line, notices)
        self.stats.held += 1
        table.hold(plan)
        write = PendingWrite(client_ip, transport, query, answer, lookup, decision, plan, counter, denied,
                             now, self.generation, table.generation(plan.pod))  # fmt: skip
        return Effects(None, write, evict_deletes, None, notices)

    def on_write_done(self, write: PendingWrite, error: Exception | None, now: float) -> Effects:
        """The kernel has the answer's elements (error None), or refused them: then the answer becomes
        SERVFAIL, since its addresses would silently not work."""
        self.stats.held -= 1
        plan, table = write.plan, self.table
        if error is not None:
            table.release(plan)
            self.stats.write_failures += 1
            line = self._line(write.lookup, write.query, write.transport, write.decision, str(error), now)
            return Effects(False, None, (), line, ())
        table.commit(plan)
        self.stats.elements_written += len(plan.writes)
        # Once written, the answer is covered: its repeats need not be decided again, unless the policy
        # or the guard changed, or an element may have gone, while the write was out.
        if (
            write.answer.repeatable
            and not plan.deletes
            and not plan.evicted
            and write.generation == self.generation
            and write.table_generation == table.generation(plan.pod)
        ):
            self._remember(write.client_ip, write.query, write.answer, write.decision, write.counter,
                           write.denied, write.decided, plan.covered_after_write)  # fmt: skip
        line = self._line(write.lookup, write.query, write.transport, write.decision, None, now)
        return Effects(True, None, (), line, ())

    def on_evict_done(self, error: Exception | None, now: float) -> Notice | None:
        """An eviction's deletes are done. Refused (say, an element the kernel had already expired), the
        elements are left to their timeout: what the bookkeeping forgot stays allowed a little longer."""
        if error is None:
            return None
        self.stats.evict_delete_failures += 1
        last, failures = self._delete_failures_logged
        if now - last < self.budget_report.line_seconds:
            return None
        self._delete_failures_logged = (now, self.stats.evict_delete_failures)
        return Notice("dns.budget_delete_failed", {
            "error": str(error),
            "failures": self.stats.evict_delete_failures - failures,
            "effect": "the evicted elements stay until their timeout",
        })  # fmt: skip

    def on_tick(self, now: float) -> list[Notice]:
        """The budget lines whose interval is over (the agent's log flush task calls this)."""
        return [self._budget_notice(line) for line in self.budget_report.due(now)]

    # ---------------------------------------------------------------- the fast path

    def _repeat(self, client_ip: str, query: AskedQuery, answer: UpstreamAnswer, now: float) -> bool:
        """A repeat whose remembered decision still holds and that gets no log line: its bookkeeping is
        done here. False means nothing was done or recorded: the full path decides it."""
        hit = self.covered.get(client_ip, query.question, answer.rcode, answer.addresses, self.generation,
                               self.table.removals, now)  # fmt: skip
        if hit is None or not self.lines.counted_repeat(client_ip, hit.qname, query.qtype, hit.outcome, now):
            return False  # the first repeat of a log window gets a line naming the rules: decided again
        stats = self.stats
        stats.remembered += 1
        stats.lookups[hit.counter] += 1
        if hit.outcome is not _ALLOWED:
            if hit.denied and hit.pod is not None and hit.qname is not None:
                self.names.record_denied(hit.pod, hit.qname, hit.denied, now)
        elif hit.dst is not None and hit.pod is not None and hit.qname is not None:
            self.table.renew(hit.pod, hit.qname, hit.dst, hit.seconds, hit.more, now)
        return True

    def _remember(
        self,
        client_ip: str,
        query: AskedQuery,
        answer: UpstreamAnswer,
        decision: Decision,
        counter: tuple[str, int, int],
        denied: tuple[str, ...],
        decided: float,
        covered_until: float,
    ) -> None:
        """A decision with nothing (more) to write, for the repeats of this answer until `covered_until`."""
        counter = self._counter_keys.setdefault(counter, counter)  # one tuple shared by the entries
        plan = decision.plan
        dst, seconds, more = None, 0, ()
        if plan is not None:
            pod, qname = plan.pod, plan.qname
            allowances = [(d, round(until - decided)) for d, until in plan.resolved.items()]
            if allowances:
                (dst, seconds), more = allowances[0], tuple(allowances[1:])
        else:
            pod, qname = decision.pod, query.qname
        entry = Remembered(answer.rcode, answer.addresses, covered_until, self.generation,
                           self.table.removals, counter, decision.outcome, pod, qname, dst, seconds, more,
                           denied)  # fmt: skip
        self.covered.put(client_ip, query.question, entry)

    def _void(self) -> None:
        self.generation += 1
        self.covered.clear()

    # ---------------------------------------------------------------- budgets and lines

    def _evict(self, plan: Plan, now: float) -> list[Notice]:
        """Apply what an entry budget takes (policy.state.budget): the bookkeeping now, the victims'
        remembered decisions dropped (a repeat would renew an entry that is gone), counted; the elements
        go in a request of their own before the answer's (its failure must not fail the answer)."""
        self.table.evict(plan)
        counts: dict[tuple[str, str], int] = {}
        for e in plan.evictions:
            counts[(e.pod, e.budget)] = counts.get((e.pod, e.budget), 0) + 1
        due = {pod for (pod, budget), n in counts.items() if self.budget_report.record(pod, budget, n, now)}
        for pod in {pod for pod, _ in counts}:
            client = self.index.pod(pod)
            for ip in client.pod.ips if client is not None else ():
                self.covered.forget(ip)
        notices = []
        for pod in sorted(due):
            line = self.budget_report.line(pod, now)
            if line is not None:
                notices.append(self._budget_notice(line))
        return notices

    def _budget_notice(self, line: dict[str, Any]) -> Notice:
        resolutions, budget = self.table.resolutions, self.table.budget
        return Notice("dns.budget_exceeded", {
            **line,
            "entries": resolutions.entries_of(line["pod"]),
            "max_entries_per_pod": budget.per_pod,
            "agent_entries": resolutions.total,
            "max_entries": budget.total,
        })  # fmt: skip

    def _line(
        self,
        lookup: AnsweredLookup,
        query: AskedQuery,
        transport: str,
        decision: Decision,
        error: str | None,
        now: float,
    ) -> LineRecord | None:
        plan = decision.plan
        wrote = plan is not None and bool(plan.writes or plan.deletes)
        key = (lookup.client_ip, lookup.qname, lookup.qtype, decision.outcome)
        if not self.lines.wants(key, wrote, error is not None, now, decision.pod or lookup.client_ip):
            return None
        return LineRecord(lookup, query, transport, decision, error)

    def pod_of(self, client_ip: str) -> str | None:
        client = self.index.client(client_ip)
        return client.pod.key if client is not None else None
