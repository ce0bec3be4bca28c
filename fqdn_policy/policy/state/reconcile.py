"""A policy change, applied to what pods resolved: the elements to write and to delete.

Reads the allow table's resolutions and elements and returns a Reconciliation, which the caller writes
to the kernel and then records with `AllowTable.apply_reconciliation`. It drops the resolutions of pods
no policy selects any more, and those already expired, as it goes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fqdn_policy.policy.match.policydiff import names_to_rematch, pods_gone, unchanged_pods
from fqdn_policy.policy.match.ruleindex import Client, PolicyIndex, RuleSet
from fqdn_policy.policy.model import Grant
from fqdn_policy.policy.state.elements import Element, ElementWrite, Reconciliation

if TYPE_CHECKING:  # the table is only read and passed in; allowtable does not import this module
    from fqdn_policy.policy.state.allowtable import AllowTable


def reconcile(
    table: AllowTable, index: PolicyIndex, now: float, previous: PolicyIndex | None = None
) -> Reconciliation:
    """Elements to add and delete so the sets say what `index` allows for what pods resolved.

    Called after a policy change: still-allowed elements are untouched (no gap), newly implied
    ones (say a rule lost its port list) are written with the time their lookup has left. Pods
    whose addresses and selecting policies are the same in `previous` keep their elements and
    resolutions as they are, so re-reading an unchanged file costs O(pods), not O(elements).
    """
    unchanged = unchanged_pods(index, previous) if previous is not None else set()
    if unchanged and len(unchanged) == len(index.policy_set.pods) and not pods_gone(index, previous):
        return Reconciliation(writes=[], deletes=[])
    desired: dict[Element, tuple[float, str]] = {}
    deletes: list[Element] = []
    keep: set[str] = set()  # pod addresses whose elements stay as they are, but for `deletes`
    for pod in index.policy_set.pods:
        if pod.key in unchanged:
            keep.update(pod.ips)
    for pod_key in table.resolutions.pods():
        if pod_key in unchanged:
            continue
        client = index.pod(pod_key)
        if client is None or client.rules is None:
            table.resolutions.drop_pod(pod_key)
            continue
        old = previous.pod(pod_key) if previous is not None else None
        if old is not None and old.rules is not None and old.pod.ips == client.pod.ips:
            names = names_to_rematch(table.resolutions.names(pod_key), old.rules, client.rules)
            if names is not None:
                keep.update(client.pod.ips)
                _rematch(table, client, old.rules, names, now, desired, deletes)
                continue
        table.resolutions.retain(pod_key, lambda _name, _dst, until: until > now)
        rules, ips = client.rules, client.ips_by_version
        named, grants = "", frozenset[Grant]()
        for qname, dst, until in table.resolutions.entries(pod_key):  # grouped by name
            if qname != named:
                named, grants = qname, rules.match(qname).grants
            _want(desired, ips[6 if ":" in dst else 4], dst, grants, until, qname)
    deletes = list(dict.fromkeys(deletes))  # two names may lose the same element
    deletes += [
        e for e, until in table.expiry.items() if e[0] not in keep and e not in desired and until > now
    ]
    writes = [
        ElementWrite(e, max(1, math.ceil(until - now)), until, name)
        for e, (until, name) in desired.items()
        if table.expiry.get(e, 0.0) < until
    ]
    return Reconciliation(writes=writes, deletes=deletes)


def _rematch(
    table: AllowTable,
    client: Client,
    old: RuleSet,
    names: list[str],
    now: float,
    desired: dict[Element, tuple[float, str]],
    deletes: list[Element],
) -> None:
    """A pod whose policies changed, for the names whose match may differ (policy.match.policydiff):
    elements the new grants imply go in `desired`, those only the old ones implied in `deletes`
    unless another live name of the pod still grants them."""
    pod, rules, ips = client.key, client.rules, client.ips_by_version
    assert rules is not None
    for qname in names:
        grants, before = rules.match(qname).grants, old.match(qname).grants
        if grants == before:
            continue
        for dst, until in table.resolutions.addresses(pod, qname).items():
            if until <= now:
                continue
            _want(desired, ips[6 if ":" in dst else 4], dst, grants, until, qname)
            for src in ips[6 if ":" in dst else 4]:
                for proto, port in before - grants:
                    element = (src, dst, proto, port)
                    if table.expiry.get(element, 0.0) > now and not _granted(table, client, element, now):
                        deletes.append(element)


def _granted(table: AllowTable, client: Client, element: Element, now: float) -> bool:
    """Whether a live name of the pod that resolved to the element's destination grants it now."""
    assert client.rules is not None
    dst, grant = element[1], (element[2], element[3])
    return any(
        until > now and grant in client.rules.match(name).grants
        for name, until in table.names_for(client.key, dst).items()
    )


def _want(
    desired: dict[Element, tuple[float, str]],
    sources: Iterable[str],
    dst: str,
    grants: Iterable[Grant],
    until: float,
    qname: str,
) -> None:
    """Every element `grants` imply for `dst` from the pod's `sources`, held at least until `until`."""
    for src in sources:
        for proto, port in grants:
            element = (src, dst, proto, port)
            held = desired.get(element)
            if held is None or held[0] < until:
                desired[element] = (until, qname)
