"""API objects (dicts, as the API server sends them) to model entries, keyed by namespace/name.

Pure: the same validation as the file loader (policy.spec.documents), plus what only a live cluster has to
decide: which pods count. Runs in the watch threads, so the event loop only files the results.

Which pods count, and why:
- no IP yet (Pending): kept with no addresses. It cannot send yet; once the kubelet reports its IP the
  MODIFIED event gives it one and it is enforced from then on.
- terminating (deletionTimestamp set): kept. Its containers run until the grace period ends and their
  traffic is still the pod's; the DELETED event removes it.
- Succeeded or Failed: dropped as if deleted. Its containers are gone and its IP is free for the next pod
  (the kubelet may report the old IP for a while); its set entries are deleted.
- hostNetwork: dropped. Its IP is the node's, shared with every other host-network pod, so a lookup from
  it cannot be told apart (and Kubernetes NetworkPolicy does not apply to such pods either).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fqdn_policy.policy.model import Pod
from fqdn_policy.policy.spec.documents import (
    DEFAULT_NAMESPACE,
    InvalidDocument,
    pod_from_document,
    policy_from_document,
)
from fqdn_policy.policy.spec.networkpolicy import (
    NETWORK_POLICY_API_VERSION,
    NETWORK_POLICY_KIND,
    network_policy_from_document,
)
from fqdn_policy.policy.spec.schema import POLICY_KIND, PROJECT_GROUP, VERSION
from fqdn_policy.sources.events import ObjectRef

TERMINAL_PHASES = ("Succeeded", "Failed")

# The watched resources, by their plural (what the API path and RBAC rules name them).
POLICIES = "fqdnnetworkpolicies"
PODS = "pods"
NETWORK_POLICIES = "networkpolicies"


@dataclass(frozen=True, slots=True)
class PodRecord:
    """A pod with what deciding between two pods reporting the same IP needs."""

    pod: Pod
    created: str  # metadata.creationTimestamp, RFC 3339 (compares as text)
    terminating: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """One object as decoded: `value` is the model, or None when the object does not count (a finished
    pod) or is invalid (then `problems` says why)."""

    key: str
    value: Any = None
    problems: tuple[str, ...] = ()
    ref: ObjectRef | None = None  # the object, for an Event about it (fqdn_policy.sources.events)


Decoder = Callable[[dict[str, Any]], Entry]


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{meta.get('namespace') or DEFAULT_NAMESPACE}/{meta.get('name') or '?'}"


def object_ref(obj: dict[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return ObjectRef(
        api_version=str(obj.get("apiVersion") or ""),
        kind=str(obj.get("kind") or ""),
        namespace=str(meta.get("namespace") or DEFAULT_NAMESPACE),
        name=str(meta.get("name") or "?"),
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def _problems(error: InvalidDocument) -> tuple[str, ...]:
    return tuple(f"{p.field}: {p.message}" for p in error.problems)


def decode_policy(obj: dict[str, Any]) -> Entry:
    # Items of a list response may omit apiVersion and kind; watch events carry them.
    obj.setdefault("apiVersion", f"{PROJECT_GROUP}/{VERSION}")
    obj.setdefault("kind", POLICY_KIND)
    try:
        return Entry(object_key(obj), policy_from_document(obj), ref=object_ref(obj))
    except InvalidDocument as error:
        return Entry(object_key(obj), problems=_problems(error), ref=object_ref(obj))


def decode_network_policy(obj: dict[str, Any]) -> Entry:
    obj.setdefault("apiVersion", NETWORK_POLICY_API_VERSION)
    obj.setdefault("kind", NETWORK_POLICY_KIND)
    try:
        return Entry(object_key(obj), network_policy_from_document(obj), ref=object_ref(obj))
    except InvalidDocument as error:
        return Entry(object_key(obj), problems=_problems(error), ref=object_ref(obj))


def decode_pod(obj: dict[str, Any]) -> Entry:
    obj.setdefault("apiVersion", "v1")
    obj.setdefault("kind", "Pod")
    key = object_key(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    obj["status"] = status  # a pod just created may have none yet
    if spec.get("hostNetwork") or status.get("phase") in TERMINAL_PHASES:
        return Entry(key)
    try:
        pod = pod_from_document(obj)
    except InvalidDocument as error:
        return Entry(key, problems=_problems(error), ref=object_ref(obj))
    meta = obj["metadata"]
    return Entry(
        key,
        PodRecord(
            pod=pod,
            created=str(meta.get("creationTimestamp") or ""),
            terminating=bool(meta.get("deletionTimestamp")),
        ),
    )


DECODERS: dict[str, Decoder] = {
    POLICIES: decode_policy,
    PODS: decode_pod,
    NETWORK_POLICIES: decode_network_policy,
}
