"""The allow table's values: one set element, its write, the plan of one answer or of a reconcile, and what
an expiry sweep dropped. Shared with the enforcer, which writes them, without the table's bookkeeping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # a plan only carries evictions; the enforcer imports this module without the budgets
    from fqdn_policy.policy.state.budget import Eviction

# One set element: (pod address, destination address, protocol or None, port or None).
Element = tuple[str, str, str | None, int | None]


class ElementWrite(NamedTuple):  # one per written element: a tuple builds 3-4x faster than a frozen dataclass
    element: Element
    timeout: int  # seconds, what the kernel is told (the answer's timeout plus the refresh slack)
    expiry: float  # now + timeout, what we remember
    name: str  # the query name, kept in the element's comment (survives an agent restart)


@dataclass(slots=True)
class Plan:
    """The outcome of one answer: elements to write, and what to remember once they are written."""

    pod: str
    qname: str
    writes: list[ElementWrite] = field(default_factory=list)
    resolved: dict[str, float] = field(default_factory=dict)  # destination -> expiry
    evicted: list[str] = field(default_factory=list)  # destinations dropped by the per-name cap
    deletes: list[Element] = field(default_factory=list)
    # Entries of this or another pod an entry budget takes out (policy.state.budget), and the elements that
    # go with them: applied by `evict` as soon as decided, written as their own request.
    evictions: list[Eviction] = field(default_factory=list)
    evict_deletes: list[Element] = field(default_factory=list)
    over_budget: list[str] = field(default_factory=list)  # the answer's addresses no budget had room for
    held: bool = False  # between `hold` and `commit`/`release`: its write is out
    pending: int = 0  # while held: the new entries it counts against the budgets
    # The last moment at which the same answer would again need no write: the earliest over the
    # elements it implies of (what the kernel holds) - (the answer's timeout). Meaningful when `writes`
    # and `deletes` are empty; fqdn_policy.policy.decide.decisioncache relies on it.
    covered_until: float = math.inf
    # The same once `writes` are committed: each written element then holds its timeout plus the
    # refresh slack, so it covers the answer until now + slack (the earliest over the writes, and
    # never later than `covered_until`).
    covered_after_write: float = math.inf


class Forgotten(NamedTuple):
    """What an expiry sweep dropped: how many elements, and the resolutions (pod, name, address, end)."""

    elements: int
    resolutions: list[tuple[str, str, str, float]]
    more: bool = False  # a limited sweep left due keys for the next call


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What a policy change asks of the kernel (policy.state.reconcile): elements to write and to delete."""

    writes: list[ElementWrite]
    deletes: list[Element]
