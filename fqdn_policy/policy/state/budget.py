"""Entry budgets: how many live allowed (pod, name, address) entries one pod, and the whole agent, may
hold, and whose entries go when an answer would exceed one. Pure: it reads policy.state.resolutions.

Without them one selected pod whose policy has a wildcard under a shared suffix (`*.s3.amazonaws.com`)
can ask unique names without end: measured before this, 150,000 names with TTL 86,400 left 98,506
elements and +100 MB of agent RSS for one pod, enough at `--client-rate 1000` to get the agent killed
for lack of memory within hours, and DNS with it for every pod of the node.

Beyond a budget the soonest-ending entries go (their allowance was nearest its end anyway):

- the pod's own budget (`--max-entries-per-pod`): the asking pod's entries;
- the agent's (`--max-entries`): the entries of the pod holding the most, the asking pod when it ties.
  A pod flooding the agent is by then the largest, so its flood evicts its own entries; a quiet pod's
  few entries go only once it is itself the largest, i.e. when every pod holds as few.

Never the answer's own addresses, unless the answer alone is more than a budget allows. An evicted
entry is an ordinary expiry come early: established connections go on (conntrack), and the next lookup
of the name allows it again. docs/semantics.md ("Entry budgets") has the defaults and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from fqdn_policy.policy.match.ruleindex import Client
from fqdn_policy.policy.state.elements import Element
from fqdn_policy.policy.state.resolutions import Resolutions
from fqdn_policy.settings import setting, validate, whole, whole_at_least

ClientOf = Callable[[str], Client | None]

# A node runs up to ~110 pods (kubelet's default max-pods). 100,000 entries at the 518-536 bytes each the
# agent's bookkeeping measures (bench.entrymem, every entry its own IPv6 address) is ~52 MB: the size
# the project's memory target is set at (150 MB at 100,000 elements), and ~900 entries a pod were every
# pod of a full node at it. A busy pod's real need: a few hundred names, with CDN names rotating through
# addresses (Cilium keeps up to 50 a name), some thousands; 10,000 leaves room, and is a tenth of the
# agent's budget.
DEFAULT_MAX_ENTRIES_PER_POD = 10_000
DEFAULT_MAX_ENTRIES = 100_000

POD, AGENT = "pod", "agent"  # which budget an eviction was for (the metrics' `budget` label)


@dataclass(frozen=True, slots=True)
class EntryBudget:
    per_pod: int = setting(
        DEFAULT_MAX_ENTRIES_PER_POD,
        "--max-entries-per-pod",
        "live allowed (name, address) entries one pod may hold; beyond it its soonest-ending "
        "entries are evicted (dns.budget_exceeded, docs/semantics.md)",
        parse=whole,
        check=whole_at_least(1),
    )
    total: int = setting(
        DEFAULT_MAX_ENTRIES,
        "--max-entries",
        "live allowed (pod, name, address) entries of the whole agent; beyond it the soonest-ending "
        "entries of the pod holding the most are evicted",
        parse=whole,
        check=whole_at_least(1),
    )

    def __post_init__(self) -> None:
        validate(self)


class Eviction(NamedTuple):
    pod: str
    qname: str
    dst: str
    until: float
    budget: str  # POD or AGENT


def choose(
    resolutions: Resolutions,
    budget: EntryBudget,
    pod: str,
    new: int,
    own: Callable[[str, str], bool],
    pending: Mapping[str, int] | None = None,
    pending_total: int = 0,
) -> tuple[list[Eviction], int]:
    """The entries to evict so an answer adding `new` entries to `pod` keeps both budgets, and how many
    of the answer's own new entries must go too (only when the others are not enough).

    `own(name, address)` says whether an entry is the answer's: never a candidate. `pending`: per pod,
    the new entries of answers whose write is out; they count, but cannot be evicted yet."""
    pending = pending or {}
    evictions: list[Eviction] = []
    trim = 0
    held = resolutions.entries_of(pod) + pending.get(pod, 0)
    over = held + new - budget.per_pod
    if over > 0:
        found = resolutions.soonest(pod, over, own)
        evictions += [Eviction(pod, q, d, u, POD) for q, d, u in found]
        trim = over - len(found)
    over = resolutions.total + pending_total + new - trim - len(evictions) - budget.total
    if over <= 0:
        return evictions, trim
    # The agent's budget: from the pod with the most entries (counting the answer and what its own
    # budget already takes), the asking pod first among equals; the next largest if it has too few.
    after = {p: n + pending.get(p, 0) for n, p in resolutions.largest()}
    after[pod] = held + new - trim - len(evictions)
    order = sorted(after, key=lambda p: (-after[p], p != pod))
    chosen = {(e.qname, e.dst) for e in evictions}
    for victim in order:
        if over <= 0:
            break

        def skip(qname: str, dst: str, victim: str = victim) -> bool:
            return (victim == pod and own(qname, dst)) or (victim == pod and (qname, dst) in chosen)

        found = resolutions.soonest(victim, over, skip)
        evictions += [Eviction(victim, q, d, u, AGENT) for q, d, u in found]
        over -= len(found)
    if over > 0:
        trim += over
    return evictions, min(trim, new)


def element_deletes(
    evictions: list[Eviction],
    pod: str,
    resolved: Mapping[str, float],
    resolutions: Resolutions,
    expiry: Mapping[Element, float],
    in_flight: Mapping[str, Mapping[str, int]],
    client_of: ClientOf,
    alive_after: float,
) -> list[Element]:
    """The elements of the evicted entries that nothing else holds: not another name of their pod that
    stays, not the answer (`pod`'s `resolved`), not an answer whose write is out (`in_flight`), and not
    one the kernel may have expired already (its expiry not after `alive_after`)."""
    evicted: dict[tuple[str, str], set[str]] = {}
    for e in evictions:
        evicted.setdefault((e.pod, e.dst), set()).add(e.qname)
    deletes: list[Element] = []
    for e in evictions:
        if e.pod == pod and e.dst in resolved:
            continue
        if resolutions.names_of(e.pod, e.dst) - evicted[(e.pod, e.dst)]:
            continue  # another name of the pod still resolves to it
        if in_flight.get(e.pod, {}).get(e.dst):
            continue
        client = client_of(e.pod)
        if client is None or client.rules is None:
            continue
        for src in client.ips_by_version[6 if ":" in e.dst else 4]:
            for proto, port in client.rules.match(e.qname).grants:
                element = (src, e.dst, proto, port)
                if expiry.get(element, 0.0) > alive_after:
                    deletes.append(element)
    return list(dict.fromkeys(deletes))
