"""What the API server has said so far, folded from list results and watch events: pure, no I/O.

h11-style: the watch threads turn HTTP into `Entry`s; this module files them by key and hands out
PolicySet snapshots. An invalid object is reported back to the caller (to log) and never replaces a
good version of the same object: a policy edited into something invalid stays in force as it was, the
way a refused file keeps the last good policy. A relist replaces everything (objects gone from the list
are gone), so a missed DELETED cannot leave a stale pod behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from fqdn_policy.policy.model import Pod, PolicySet
from fqdn_policy.sources.decode import NETWORK_POLICIES, PODS, POLICIES, Entry, PodRecord

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")


@dataclass(slots=True)
class Fold:
    """The outcome of folding one list or event: did the snapshot change, and what was refused."""

    changed: bool = False
    rejected: list[Entry] = field(default_factory=list)


class ObjectStore:
    """The objects of one resource by namespace/name, and the resourceVersion they are current at."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}
        self.resource_version: str | None = None
        self.listed = False

    def replace(self, entries: Iterable[Entry], resource_version: str) -> Fold:
        """A complete list: what is not in it no longer exists."""
        fold = Fold()
        objects: dict[str, Any] = {}
        for entry in entries:
            if entry.problems:
                fold.rejected.append(entry)
                if entry.key in self.objects:
                    objects[entry.key] = self.objects[entry.key]
            elif entry.value is not None:
                objects[entry.key] = entry.value
        fold.changed = objects != self.objects
        self.objects = objects
        self.resource_version = resource_version
        self.listed = True
        return fold

    def apply(self, event_type: str, entry: Entry | None, resource_version: str) -> Fold:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown watch event type {event_type!r}; expected one of {EVENT_TYPES}")
        self.resource_version = resource_version
        fold = Fold()
        if event_type == "BOOKMARK" or entry is None:
            return fold
        if event_type == "DELETED":
            fold.changed = self.objects.pop(entry.key, None) is not None
        elif entry.problems:
            fold.rejected.append(entry)
        elif entry.value is None:  # no longer counts (a finished pod): as if deleted
            fold.changed = self.objects.pop(entry.key, None) is not None
        elif self.objects.get(entry.key) != entry.value:
            self.objects[entry.key] = entry.value
            fold.changed = True
        return fold


class ClusterState:
    """One store per watched resource; a snapshot is a PolicySet."""

    def __init__(self, resources: Iterable[str]) -> None:
        self.stores = {name: ObjectStore() for name in resources}

    @property
    def synced(self) -> bool:
        """Every resource listed at least once: before that a snapshot would drop what it has not seen."""
        return all(store.listed for store in self.stores.values())

    def replace(self, resource: str, entries: Iterable[Entry], resource_version: str) -> Fold:
        return self.stores[resource].replace(entries, resource_version)

    def apply(self, resource: str, event_type: str, entry: Entry | None, resource_version: str) -> Fold:
        return self.stores[resource].apply(event_type, entry, resource_version)

    def snapshot(self) -> PolicySet:
        def values(resource: str) -> list[Any]:
            store = self.stores.get(resource)
            return [store.objects[k] for k in sorted(store.objects)] if store else []

        return PolicySet(
            policies=tuple(values(POLICIES)),
            pods=pods_with_unique_ips(values(PODS)),
            network_policies=tuple(values(NETWORK_POLICIES)),
        )


def pods_with_unique_ips(records: list[PodRecord]) -> tuple[Pod, ...]:
    """Each IP belongs to one pod. Two can report the same one for a moment (an old pod's status lags
    its teardown while the IP already went to a new pod): the IP is the running pod's rather than a
    terminating one's, else the newer pod's."""
    owner: dict[str, PodRecord] = {}
    for record in records:
        for ip in record.pod.ips:
            current = owner.get(ip)
            if current is None or _rank(record) > _rank(current):
                owner[ip] = record
    pods = []
    for record in records:
        pod = record.pod
        kept = tuple(ip for ip in pod.ips if owner[ip] is record)
        pods.append(pod if kept == pod.ips else replace(pod, ips=kept))
    return tuple(pods)


def _rank(record: PodRecord) -> tuple[bool, str, str]:
    return (not record.terminating, record.created, record.pod.key)
