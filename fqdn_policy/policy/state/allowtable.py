"""What the kernel's allow sets hold, and what they should hold: the name manager.

Pure bookkeeping with `now` passed in. It remembers, per pod and query name, the addresses the pod was
answered with (its *resolutions*), so a policy reload can recompute every element without a new lookup,
and the elements it wrote with their expiry, so an answer already covered costs no kernel write.
Its values (elements, writes, plans) are policy.state.elements; what a policy change asks of it,
policy.state.reconcile.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from fqdn_policy.policy.model import Grant
from fqdn_policy.policy.state import budget as budgets
from fqdn_policy.policy.state.budget import ClientOf, EntryBudget
from fqdn_policy.policy.state.elements import Element, ElementWrite, Forgotten, Plan, Reconciliation
from fqdn_policy.policy.state.expirywheel import ExpiryWheel
from fqdn_policy.policy.state.resolutions import Resolutions
from fqdn_policy.policy.state.ttl import TTLPolicy

DEFAULT_MAX_ADDRESSES_PER_NAME = 256

# An element about to expire is not deleted for a budget: the kernel may have expired it already, and
# deleting an element it does not hold fails the request (ENOENT).
EXPIRY_MARGIN = 1.0


class AllowTable:
    def __init__(
        self,
        ttl: TTLPolicy,
        max_addresses_per_name: int = DEFAULT_MAX_ADDRESSES_PER_NAME,
        budget: EntryBudget | None = None,
    ) -> None:
        self.ttl = ttl
        self.max_addresses_per_name = max_addresses_per_name
        self.budget = budget if budget is not None else EntryBudget()
        # pod -> evictions applied to it: a remembered decision of the pod is void once it moves (the
        # gate checks it with `removals`, which counts what can take any pod's elements).
        self.generations: dict[str, int] = {}
        # pod -> address -> plans whose write is out: a budget does not delete what they rely on.
        self._in_flight: dict[str, dict[str, int]] = {}
        # pod -> new entries of plans whose write is out, and their sum: counted against the budgets,
        # or every answer decided while others are written would see the same room.
        self._pending: dict[str, int] = {}
        self._pending_total = 0
        self.expiry: dict[Element, float] = {}
        self._wheel: ExpiryWheel[Element] = ExpiryWheel()  # elements by expiry, for forget_expired
        # Elements in `expiry` by IP version of the destination, kept as they come and go so the
        # metrics gauge is O(1) (counting 100,000 keys at scrape time stalled the loop ~95 ms).
        self.counts: dict[int, int] = {4: 0, 6: 0}
        # What each pod was answered with, both ways (an evicted address stays allowed while another
        # name of the pod still holds it).
        self.resolutions = Resolutions()
        # Counts the deletions that can take away an element before its expiry (the per-name cap, a
        # reconcile): a remembered "this answer is covered" is void once it moves.
        self.removals = 0

    def __len__(self) -> int:
        return len(self.expiry)

    def plan(
        self,
        pod: str,
        pod_ips: dict[int, tuple[str, ...]],
        qname: str,
        grants: Iterable[Grant],
        addresses: Iterable[tuple[int, str, int]],
        now: float,
        client_of: ClientOf | None = None,
    ) -> Plan:
        """Elements to write for one allowed answer.

        `addresses` are (IP version, address, record TTL); `pod_ips` maps an IP version to the pod's
        addresses of that version, since an AAAA answer is used from the pod's IPv6 address.
        `client_of(pod)` gives a pod's addresses and rules, for the elements of entries a budget evicts
        (without it, evicted entries are forgotten but their elements left to expire).
        """
        plan = Plan(pod=pod, qname=qname)
        grants = tuple(grants)
        expiry = self.expiry
        needs_write = self.ttl.needs_write
        resolved = plan.resolved
        covered_until = covered_after_write = math.inf
        for version, dst, ttl in addresses:
            timeout = self.ttl.timeout(ttl)
            until = now + timeout
            if resolved.get(dst, 0.0) < until:
                resolved[dst] = until
            for src in pod_ips.get(version, ()):
                for proto, port in grants:
                    element = (src, dst, proto, port)
                    held = expiry.get(element)
                    if held is None or needs_write(held, ttl, now):
                        written = self.ttl.written_timeout(timeout)
                        plan.writes.append(ElementWrite(element, written, now + written, qname))
                        if now + written - timeout < covered_after_write:
                            covered_after_write = now + written - timeout
                    elif held - timeout < covered_until:
                        covered_until = held - timeout
        plan.covered_until = covered_until
        plan.covered_after_write = min(covered_until, covered_after_write)
        self._apply_cap(plan, pod_ips, grants)
        self._apply_budget(plan, now, client_of)
        return plan

    def _apply_budget(self, plan: Plan, now: float, client_of: ClientOf | None) -> None:
        pod, qname, resolved = plan.pod, plan.qname, plan.resolved
        resolutions, budget = self.resolutions, self.budget
        if (
            resolutions.entries_of(pod) + self._pending.get(pod, 0) + len(resolved) <= budget.per_pod
            and resolutions.total + self._pending_total + len(resolved) <= budget.total
        ):
            return  # the common case: room in both budgets even if every address were new
        new = sum(1 for dst in resolved if resolutions.until(pod, qname, dst) is None) - len(plan.evicted)
        going = set(plan.evicted)

        def own(name: str, dst: str) -> bool:
            return name == qname and (dst in resolved or dst in going)

        plan.evictions, trim = budgets.choose(
            resolutions, self.budget, pod, new, own, self._pending, self._pending_total
        )
        if trim:
            fresh = sorted(
                (until, dst) for dst, until in resolved.items() if resolutions.until(pod, qname, dst) is None
            )
            plan.over_budget = [dst for _, dst in fresh[:trim]]
            for dst in plan.over_budget:
                del resolved[dst]
            dropped = set(plan.over_budget)
            plan.writes = [w for w in plan.writes if w.element[1] not in dropped]
        if client_of is not None:
            plan.evict_deletes = budgets.element_deletes(
                plan.evictions, pod, resolved, resolutions, self.expiry, self._in_flight, client_of,
                now + EXPIRY_MARGIN,
            )  # fmt: skip

    def evict(self, plan: Plan) -> None:
        """Apply a plan's budget evictions now, before its write: the budgets hold at every moment, and
        an answer decided meanwhile counts without them. The deleted elements go in their own request."""
        for e in plan.evictions:
            self.resolutions.remove(e.pod, e.qname, e.dst)
            self.generations[e.pod] = self.generations.get(e.pod, 0) + 1
        for element in plan.evict_deletes:
            self._drop(element)

    def generation(self, pod: str | None) -> int:
        """What a remembered decision of `pod` is valid for: it moves with every change that can take an
        element of the pod away before its expiry."""
        return self.removals + (self.generations.get(pod, 0) if pod is not None else 0)

    def hold(self, plan: Plan) -> None:
        """The plan's write is out: until `commit` or `release`, no budget deletes its addresses."""
        plan.held = True
        pod, qname, until = plan.pod, plan.qname, self.resolutions.until
        pending = self._in_flight.setdefault(pod, {})
        for dst in plan.resolved:
            pending[dst] = pending.get(dst, 0) + 1
        plan.pending = sum(1 for dst in plan.resolved if until(pod, qname, dst) is None)
        self._pending[pod] = self._pending.get(pod, 0) + plan.pending
        self._pending_total += plan.pending

    def release(self, plan: Plan) -> None:
        """The plan's write is over (done or failed)."""
        if not plan.held:
            return
        plan.held = False
        left = self._pending.get(plan.pod, 0) - plan.pending
        if left > 0:
            self._pending[plan.pod] = left
        else:
            self._pending.pop(plan.pod, None)
        self._pending_total -= plan.pending
        plan.pending = 0
        pending = self._in_flight.get(plan.pod, {})
        for dst in plan.resolved:
            left = pending.get(dst, 0) - 1
            if left > 0:
                pending[dst] = left
            else:
                pending.pop(dst, None)
        if not pending:
            self._in_flight.pop(plan.pod, None)

    def _apply_cap(self, plan: Plan, pod_ips: dict[int, tuple[str, ...]], grants: tuple[Grant, ...]) -> None:
        if self.resolutions.count(plan.pod, plan.qname) + len(plan.resolved) <= self.max_addresses_per_name:
            return  # cannot overflow; skips building the union on every answer
        known = self.resolutions.addresses(plan.pod, plan.qname)
        overflow = len(known.keys() | plan.resolved.keys()) - self.max_addresses_per_name
        if overflow <= 0:
            return
        # Keep the newest: the answer's own addresses first, then those whose allowance runs longest.
        merged = {**known, **plan.resolved}
        oldest = sorted(merged, key=lambda d: (d in plan.resolved, merged[d]))[:overflow]
        evicted = set(oldest)
        plan.evicted = [d for d in oldest if d in known]
        plan.writes = [w for w in plan.writes if w.element[1] not in evicted]
        for dst in evicted:
            plan.resolved.pop(dst, None)
        for dst in plan.evicted:
            if self.resolutions.names_of(plan.pod, dst) - {plan.qname}:
                continue  # another name of this pod still resolves to it
            version = 6 if ":" in dst else 4
            for src in pod_ips.get(version, ()):
                for proto, port in grants:
                    element = (src, dst, proto, port)
                    if element in self.expiry:
                        plan.deletes.append(element)

    def _store(self, element: Element, until: float) -> None:
        previous = self.expiry.get(element)
        if previous is None:
            self.counts[6 if ":" in element[1] else 4] += 1
        if previous is None or until < previous:
            self._wheel.file(element, until)  # an extension is found when its old slot comes due
        self.expiry[element] = until

    def _drop(self, element: Element) -> None:
        if self.expiry.pop(element, None) is not None:
            self.counts[6 if ":" in element[1] else 4] -= 1

    def commit(self, plan: Plan) -> None:
        """Record a plan once the kernel has acknowledged its writes."""
        self.release(plan)
        for write in plan.writes:
            if self.expiry.get(write.element, 0.0) < write.expiry:
                self._store(write.element, write.expiry)
        if plan.deletes:
            self.removals += 1
        for element in plan.deletes:
            self._drop(element)
        if plan.resolved or plan.evicted:
            self.resolutions.record(plan.pod, plan.qname, plan.resolved, plan.evicted)

    def apply_reconciliation(self, rec: Reconciliation) -> None:
        if rec.deletes:
            self.removals += 1
        for element in rec.deletes:
            self._drop(element)
        for write in rec.writes:
            self._store(write.element, write.expiry)

    def live_writes(self, now: float, margin: float = 1.0) -> list[ElementWrite]:
        """Every element still live, with the time it has left: to write them all back after a repair."""
        names = {dst: name for _, name, dst, _ in self.resolutions.items()}
        return [
            ElementWrite(e, math.ceil(until - now), until, names.get(e[1], ""))
            for e, until in self.expiry.items()
            if until - now > margin
        ]

    def renew(
        self, pod: str, qname: str, dst: str, seconds: int, more: tuple[tuple[str, int], ...], now: float
    ) -> None:
        """A covered repeat's bookkeeping: its allowances (address, seconds) end no earlier than `now` plus
        their seconds. The kernel already holds every element for longer (policy.decide.decisioncache)."""
        if not more:
            self.resolutions.extend(pod, qname, dst, now + seconds)  # the common answer: one address
            return
        resolved = {dst: now + seconds}
        for other, other_seconds in more:
            resolved[other] = now + other_seconds
        self.resolutions.record(pod, qname, resolved)

    def names_for(self, pod: str, dst: str) -> dict[str, float]:
        """The names `pod` resolved to `dst` through an allowed answer, with when each allowance ends
        (kept until the next expiry sweep, so a recently expired one is still known)."""
        out: dict[str, float] = {}
        for qname in self.resolutions.names_of(pod, dst):
            until = self.resolutions.until(pod, qname, dst)
            if until is not None:
                out[qname] = until
        return out

    def forget_expired(self, now: float, limit: int | None = None) -> Forgotten:
        """Drop bookkeeping the kernel has already expired: the elements, and the resolutions (returned,
        so a later drop can still say which name expired). Looks only at what may have expired, at
        most `limit` keys of each kind per call; `Forgotten.more` says whether a call should follow."""
        dropped = 0
        expiry = self.expiry
        for element in self._wheel.due(now, limit):
            until = expiry.get(element)
            if until is None:
                continue
            if until <= now:
                self._drop(element)
                dropped += 1
            else:
                self._wheel.file(element, until)
        resolutions = self.resolutions.expire_due(now, limit)
        more = self._wheel.has_due(now) or self.resolutions.has_due(now)
        return Forgotten(dropped, resolutions, more)

    def adopt(self, element: Element, expiry: float, name: str, pod: str | None) -> None:
        """Take over an element found in the kernel at start, so a restart forgets nothing."""
        if self.expiry.get(element, 0.0) < expiry:
            self._store(element, expiry)
        if pod and name:
            self.resolutions.record(pod, name, {element[1]: expiry})
