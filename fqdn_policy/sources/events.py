"""Kubernetes Events on the policies the agent refuses or only partly applies, so `kubectl describe
fqdnnp NAME` (or `describe networkpolicy`) shows why: what to say, on which object, and when. Pure:
times are passed in; fqdn_policy.sources.eventsink does the HTTP.

Every node's agent decides for itself (each sees the same objects), so each posts its own Event,
with its node as `source.host`: a policy refused on every node shows one line per node, and one that
only some nodes refuse (an agent of another version) says which.

Rate-limited in the spirit of client-go's EventCorrelator: the same (object, reason, message) is
created once; seeing it again (a relist, an unrelated edit) only counts, and the count and
lastTimestamp are patched at most once per REPEAT_INTERVAL. All creates and patches together draw on
one token bucket (BURST, then one per REFILL_SECONDS), so a thousand bad policies cost the API server
a burst and then a trickle, never a flood.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

COMPONENT = "fqdn-policy"
REFUSED = "PolicyRefused"  # invalid beyond what the CRD schema catches: the last valid version stays
NOT_COMPOSED = "NotComposed"  # a NetworkPolicy part (selector peers, named ports) not composed
REPEAT_INTERVAL = 600.0
BURST = 25
REFILL_SECONDS = 10.0
MAX_TRACKED = 4096  # (object, reason, message) remembered for dedup; the oldest are forgotten
MAX_MESSAGE = 1024  # the API server refuses longer event messages


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about, as `involvedObject` names it (kubectl matches on the uid)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""
    resource_version: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace}
        out["name"] = self.name
        if self.uid:
            out["uid"] = self.uid
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        return out


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth an Event: `reason` is REFUSED or NOT_COMPOSED."""

    ref: ObjectRef
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Create:
    namespace: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Patch:
    namespace: str
    name: str
    body: dict[str, Any]  # a JSON merge patch: count and lastTimestamp


@dataclass(slots=True)
class _Sent:
    name: str
    count: int
    sent_at: float


def timestamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")  # RFC 3339 in UTC, as the API server writes them


class EventBook:
    """Decides, per notice, to create an Event, patch its count, or say nothing."""

    def __init__(self, node: str, instance: str) -> None:
        self.node = node
        self.instance = instance  # this agent process (its start time): a restarted agent starts anew
        self.tokens = float(BURST)
        self.refilled_at: float | None = None
        self.suppressed = 0  # notices not sent for want of a token
        self._sent: OrderedDict[tuple[str, str, str], _Sent] = OrderedDict()

    def note(self, notice: Notice, wall: datetime, now: float) -> Create | Patch | None:
        ref = notice.ref
        message = notice.message[:MAX_MESSAGE]
        key = (ref.uid or f"{ref.kind}/{ref.namespace}/{ref.name}", notice.reason, message)
        sent = self._sent.get(key)
        if sent is not None:
            self._sent.move_to_end(key)
            sent.count += 1
            if now - sent.sent_at < REPEAT_INTERVAL or not self._take(now):
                return None
            sent.sent_at = now
            body = {"count": sent.count, "lastTimestamp": timestamp(wall)}
            return Patch(ref.namespace, sent.name, body)
        if not self._take(now):
            return None
        name = self._name(ref, notice.reason, message)
        self._sent[key] = _Sent(name, 1, now)
        while len(self._sent) > MAX_TRACKED:
            self._sent.popitem(last=False)
        return Create(ref.namespace, self._body(name, ref, notice.reason, message, wall))

    def _take(self, now: float) -> bool:
        if self.refilled_at is not None:
            self.tokens = min(BURST, self.tokens + (now - self.refilled_at) / REFILL_SECONDS)
        self.refilled_at = now
        if self.tokens < 1:
            self.suppressed += 1
            return False
        self.tokens -= 1
        return True

    def _name(self, ref: ObjectRef, reason: str, message: str) -> str:
        digest = hashlib.sha256(
            "\0".join((self.node, self.instance, ref.uid, ref.name, reason, message)).encode()
        ).hexdigest()[:16]
        return f"{ref.name[:200]}.{digest}"

    def _body(self, name: str, ref: ObjectRef, reason: str, message: str, wall: datetime) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": ref.to_json(),
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT, "host": self.node},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.node,
            "firstTimestamp": timestamp(wall),
            "lastTimestamp": timestamp(wall),
            "count": 1,
        }
