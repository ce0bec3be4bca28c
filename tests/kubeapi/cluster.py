"""The fake API server's storage: objects, a resourceVersion counter, the event history watches replay,
and the knobs tests turn (compaction -> 410, bookmarks, dropping every watch).

Thread-safe: the HTTP handler threads wait on `changed` for something to send.
"""

from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResourceInfo:
    plural: str
    path: str  # the cluster-wide collection path
    list_kind: str
    kind: str
    api_version: str
    namespaced_path: str  # with {namespace}
    items_carry_kind: bool  # custom resources do; built-in lists omit kind and apiVersion per item


RESOURCES = {
    r.plural: r
    for r in (
        ResourceInfo(
            "pods", "/api/v1/pods", "PodList", "Pod", "v1", "/api/v1/namespaces/{namespace}/pods", False
        ),
        ResourceInfo(
            "fqdnnetworkpolicies",
            "/apis/fqdn.policy.dev/v1alpha1/fqdnnetworkpolicies",
            "FQDNNetworkPolicyList",
            "FQDNNetworkPolicy",
            "fqdn.policy.dev/v1alpha1",
            "/apis/fqdn.policy.dev/v1alpha1/namespaces/{namespace}/fqdnnetworkpolicies",
            True,
        ),
        ResourceInfo(
            "networkpolicies",
            "/apis/networking.k8s.io/v1/networkpolicies",
            "NetworkPolicyList",
            "NetworkPolicy",
            "networking.k8s.io/v1",
            "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
            False,
        ),
    )
}


@dataclass(frozen=True)
class Event:
    resource_version: int
    resource: str
    type: str
    object: dict[str, Any]


def key_of(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


class FakeCluster:
    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {plural: {} for plural in RESOURCES}
        self.resource_version = 100
        self.history: list[Event] = []
        self.compacted = 0  # watches from a resourceVersion below this get 410 Gone
        self.expiries = 0  # generation: open watches end with a 410 ERROR event
        self.drops = 0  # generation: open watches are cut without a closing chunk
        self.bookmarks = 0  # generation: open watches (with allowWatchBookmarks) get a BOOKMARK
        self.events: dict[tuple[str, str], dict[str, Any]] = {}  # core/v1 Events by (namespace, name)

    def put(self, resource: str, obj: dict[str, Any]) -> int:
        info = RESOURCES[resource]
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", info.api_version)
        obj.setdefault("kind", info.kind)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("creationTimestamp", "2026-11-26T00:00:00Z")
        with self.changed:
            previous = self.objects[resource].get(key_of(obj))
            # The API server gives each object a uid at creation and keeps it through updates.
            meta.setdefault("uid", previous["metadata"]["uid"] if previous else str(uuid.uuid4()))
            self.resource_version += 1
            meta["resourceVersion"] = str(self.resource_version)
            key = key_of(obj)
            kind = "MODIFIED" if key in self.objects[resource] else "ADDED"
            self.objects[resource][key] = obj
            self.history.append(Event(self.resource_version, resource, kind, copy.deepcopy(obj)))
            self.changed.notify_all()
            return self.resource_version

    def delete(self, resource: str, key: str) -> int:
        with self.changed:
            obj = self.objects[resource].pop(key)
            self.resource_version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.resource_version)
            self.history.append(Event(self.resource_version, resource, "DELETED", obj))
            self.changed.notify_all()
            return self.resource_version

    def expire(self) -> None:
        """Compact the history: every open watch gets 410 Gone, and so does a resume from before now."""
        with self.changed:
            self.compacted = self.resource_version
            self.history.clear()
            self.expiries += 1
            self.changed.notify_all()

    def drop_watches(self) -> None:
        with self.changed:
            self.drops += 1
            self.changed.notify_all()

    def bookmark(self) -> None:
        with self.changed:
            self.resource_version += 1  # as if other resources moved on
            self.bookmarks += 1
            self.changed.notify_all()

    def create_event(self, namespace: str, event: dict[str, Any]) -> bool:
        """False if an Event of that name exists (409 AlreadyExists)."""
        with self.changed:
            key = (namespace, event["metadata"]["name"])
            if key in self.events:
                return False
            self.resource_version += 1
            event["metadata"]["resourceVersion"] = str(self.resource_version)
            self.events[key] = copy.deepcopy(event)
            self.changed.notify_all()
            return True

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """A JSON merge patch (RFC 7386); None if there is no such Event (404)."""
        with self.changed:
            event = self.events.get((namespace, name))
            if event is None:
                return None
            merge_patch(event, patch)
            self.changed.notify_all()
            return copy.deepcopy(event)

    def snapshot(self, resource: str) -> tuple[list[dict[str, Any]], int]:
        with self.changed:
            items = [copy.deepcopy(self.objects[resource][k]) for k in sorted(self.objects[resource])]
            return items, self.resource_version


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
