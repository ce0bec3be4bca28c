"""The decision for one answered lookup: which set elements to write, and what to log.

Pure: the DNS layer hands in who asked, what they asked and which addresses came back; the caller
writes `plan.writes` to the kernel, releases the answer, then commits the plan to the AllowTable.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import NO_MATCH, NameMatch, PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.elements import Plan


class Outcome(StrEnum):
    ALLOWED = "allowed"  # addresses allowed (written now or already covered)
    UNKNOWN_CLIENT = "unknown-client"  # no pod has this address: nothing to enforce
    NOT_SELECTED = "not-selected"  # the pod is selected by no policy: not enforced
    NOT_ALLOWED = "name-not-allowed"  # enforced pod, but no rule matches the name
    NO_ADDRESSES = "no-addresses"  # allowed name, but no A/AAAA in the answer (NXDOMAIN, other type...)
    UNMATCHABLE_NAME = "unmatchable-name"  # the name has bytes no policy name can match


class AnsweredLookup(NamedTuple):
    """What the DNS layer extracted; addresses are (IP version, address text, TTL) on the qname chain.

    This and Decision are named tuples, not frozen dataclasses: one of each is built per answer, and a
    frozen dataclass's __init__ (object.__setattr__ per field) measured three to four times slower."""

    client_ip: str
    qname: str | None  # normalised; None when the wire name holds bytes outside hostname characters
    qtype: int
    rcode: int
    addresses: tuple[tuple[int, str, int], ...]


class Decision(NamedTuple):
    outcome: Outcome
    pod: str | None
    match: NameMatch
    plan: Plan | None
    guarded: tuple[str, ...]  # answered addresses never allowed (loopback, link-local, node, protected)

    @property
    def needs_write(self) -> bool:
        return self.plan is not None and bool(self.plan.writes or self.plan.deletes)


def decide(
    lookup: AnsweredLookup, index: PolicyIndex, table: AllowTable, guard: AddressGuard, now: float
) -> Decision:
    client = index.client(lookup.client_ip)
    if client is None:
        return Decision(Outcome.UNKNOWN_CLIENT, None, NO_MATCH, None, ())
    pod = client.key
    if client.rules is None:
        return Decision(Outcome.NOT_SELECTED, pod, NO_MATCH, None, ())
    if lookup.qname is None:
        return Decision(Outcome.UNMATCHABLE_NAME, pod, NO_MATCH, None, ())
    match = client.rules.match(lookup.qname)
    if not match.rules:
        return Decision(Outcome.NOT_ALLOWED, pod, match, None, ())
    usable: list[tuple[int, str, int]] = []
    guarded: list[str] = []
    for address in lookup.addresses:
        if guard.protects(address[0], address[1]):
            guarded.append(address[1])
        else:
            usable.append(address)
    if not usable:
        return Decision(Outcome.NO_ADDRESSES, pod, match, None, tuple(guarded))
    plan = table.plan(pod, client.ips_by_version, lookup.qname, match.grants, usable, now, index.pod)
    return Decision(Outcome.ALLOWED, pod, match, plan, tuple(guarded))
