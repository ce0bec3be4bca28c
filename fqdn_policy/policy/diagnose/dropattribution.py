"""Why was this packet denied? Pure: the logged packet, the rule index and what pods resolved go in, an
explanation comes out (the agent writes it as one `egress.dropped` or `egress.would_drop` line).

The names come from two memories: the AllowTable's resolutions (answers a rule allowed, with their
expiry) and a NameMemory of what the AllowTable does not hold: answers to names no rule allows (it never
sees them) and allowances it forgot at the expiry sweep (an application reusing an address long after
its TTL, the most common "it worked yesterday" drop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fqdn_policy.policy.match.ruleindex import NO_MATCH, PolicyIndex
from fqdn_policy.policy.model import Grant, grant_protocol, grant_text
from fqdn_policy.policy.state.allowtable import AllowTable

NEVER_RESOLVED = "never resolved through the proxy"
NAME_MEMORY_SECONDS = 3600.0
NAME_MEMORY_LIMIT = 65536  # (pod, destination) pairs; the oldest go first


class Reason(StrEnum):
    NAME_NOT_ALLOWED = "name-not-allowed"  # resolved through the proxy, but no rule allows the name
    PORT_NOT_ALLOWED = "port-not-allowed"  # an allowed name, but not this protocol or port
    EXPIRED = "expired"  # an allowed name whose allowance (the answer's TTL) has run out
    NEVER_RESOLVED = "never-resolved"  # a hard-coded address, or a lookup that bypassed the proxy
    NOT_IN_KERNEL = "not-in-kernel"  # the agent holds an allowance the kernel's set lacks
    UNKNOWN_POD = "unknown-pod"  # the source is no pod the agent knows (any more)


EXPLANATIONS = {
    Reason.NAME_NOT_ALLOWED: "resolved through the proxy, but no policy selecting the pod allows the name",
    Reason.PORT_NOT_ALLOWED: "the name is allowed, but not for this protocol and port",
    Reason.EXPIRED: "the name was allowed, but its allowance (the answer's TTL) ran out; look it up again",
    Reason.NEVER_RESOLVED: f"{NEVER_RESOLVED} (a hard-coded address, or a lookup that bypassed the proxy)",
    Reason.NOT_IN_KERNEL: "the agent holds an allowance the kernel's set lacks (it is being repaired?)",
    Reason.UNKNOWN_POD: "the source address is no pod this agent knows",
}


class NameMemory:
    """Names a pod was answered with that the AllowTable does not hold, by destination:
    (pod, dst) -> {name: (recorded at, allowance end or None for a name no rule allowed)}."""

    def __init__(self, limit: int = NAME_MEMORY_LIMIT, keep: float = NAME_MEMORY_SECONDS) -> None:
        self.limit = limit
        self.keep = keep
        self._names: dict[tuple[str, str], dict[str, tuple[float, float | None]]] = {}

    def __len__(self) -> int:
        return len(self._names)

    def record_denied(self, pod: str, qname: str, addresses: Iterable[str], now: float) -> None:
        for dst in addresses:
            self._put(pod, dst, qname, now, None)

    def record_expired(self, expired: Iterable[tuple[str, str, str, float]], now: float) -> None:
        """(pod, name, destination, allowance end) the AllowTable is about to forget."""
        for pod, qname, dst, until in expired:
            self._put(pod, dst, qname, now, until)

    def _put(self, pod: str, dst: str, qname: str, now: float, until: float | None) -> None:
        key = (pod, dst)
        names = self._names.pop(key, None) or {}
        names[qname] = (now, until)
        self._names[key] = names  # re-inserted: the dict's order is the eviction order
        while len(self._names) > self.limit:
            del self._names[next(iter(self._names))]

    def names_for(self, pod: str, dst: str, now: float) -> dict[str, float | None]:
        """name -> when its allowance ended (None: never allowed), for names recorded within `keep`."""
        names = self._names.get((pod, dst), {})
        return {name: until for name, (seen, until) in sorted(names.items()) if now - seen <= self.keep}


@dataclass(frozen=True, slots=True)
class NameSeen:
    name: str
    allowed: bool  # a rule of a policy selecting the pod matches the name now, and matched when answered
    remaining: float | None = None  # seconds the allowance has left; negative once expired
    grants: tuple[str, ...] = ()  # what the allowing rules open, as "tcp/443", "udp/any", "any"

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "allowed": self.allowed}
        if self.remaining is not None:
            if self.remaining > 0:
                out["expires_in_s"] = round(self.remaining)
            else:
                out["expired_s_ago"] = round(-self.remaining)
        if self.grants:
            out["grants"] = list(self.grants)
        return out


@dataclass(frozen=True, slots=True)
class DropAttribution:
    pod: str | None
    reason: Reason
    names: tuple[NameSeen, ...]

    @property
    def explanation(self) -> str:
        return EXPLANATIONS[self.reason]

    def fields(self) -> dict[str, Any]:
        return {
            "pod": self.pod,
            "reason": self.reason.value,
            "names": [n.fields() for n in self.names],
            "explanation": self.explanation,
        }


def _covers(grants: Iterable[Grant], protocol: str, port: int | None) -> bool:
    return any(
        proto is None or (grant_protocol(proto) == protocol and (granted is None or granted == port))
        for proto, granted in grants
    )


def attribute(
    source: str,
    destination: str,
    protocol: str,
    port: int | None,
    index: PolicyIndex,
    allowed: AllowTable,
    memory: NameMemory,
    now: float,
) -> DropAttribution:
    client = index.client(source)
    if client is None:
        return DropAttribution(None, Reason.UNKNOWN_POD, ())
    pod = client.pod.key
    seen: list[NameSeen] = []
    live_covering = live = expired = False
    held = allowed.names_for(pod, destination)
    remembered = {n: u for n, u in memory.names_for(pod, destination, now).items() if n not in held}
    # Names the AllowTable holds first, then remembered ones; each group by name.
    names = sorted({**remembered, **held}.items(), key=lambda item: (item[0] not in held, item[0]))
    for name, until in names:
        match = client.rules.match(name) if client.rules is not None else NO_MATCH
        if until is None or not match.rules:
            seen.append(NameSeen(name, False))
            continue
        remaining = until - now
        grants = tuple(sorted(grant_text(g) for g in match.grants))
        seen.append(NameSeen(name, True, remaining, grants))
        if remaining > 0:
            live = True
            live_covering |= _covers(match.grants, protocol, port)
        else:
            expired = True
    if live_covering:
        reason = Reason.NOT_IN_KERNEL
    elif live:
        reason = Reason.PORT_NOT_ALLOWED
    elif expired:
        reason = Reason.EXPIRED
    elif seen:
        reason = Reason.NAME_NOT_ALLOWED
    else:
        reason = Reason.NEVER_RESOLVED
    return DropAttribution(pod, reason, tuple(seen))
