"""The policy model: plain immutable data built by the loaders, read by the rule index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from fqdn_policy.policy.match.names import NameMatcher


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    ALL = "ALL"


# The kernel protocols a rule with protocol ALL and a port opens; SCTP because Kubernetes has it.
ALL_PORT_PROTOCOLS = ("tcp", "udp", "sctp")

# One thing a rule grants on an allowed address: (protocol, port), None meaning any.
# (None, None) is everything; ("tcp", None) every TCP port; ("tcp", 443) one port.
Grant = tuple[str | None, int | None]

# The grant protocol of a verifying policy (annotation fqdn.policy.dev/verify-sni, or --verify-sni):
# TCP whose first bytes must present an allowed name (TLS server_name, HTTP Host on port 80) before the
# flow is let through. Its elements live in their own sets (fqdn_policy.enforcer.ruleset), so an address
# that some other grant also allows is never checked.
SNI = "sni"
QUIC_PORT = 443


def grant_protocol(proto: str | None) -> str | None:
    """The kernel protocol a grant's protocol opens: a verified grant is TCP."""
    return "tcp" if proto == SNI else proto


def verified_grants(grants: frozenset[Grant]) -> frozenset[Grant]:
    """What a rule grants under verify-sni: its TCP grants become verified ones; a rule without ports
    grants verified TCP on every port and nothing else (a name cannot be verified on other protocols);
    UDP 443 (QUIC, whose Initial packets are not parsed) is not granted, so clients fall back to TCP;
    other UDP and SCTP port grants are kept as they are (not verifiable, not checked)."""
    out: set[Grant] = set()
    for proto, port in grants:
        if proto is None or proto == "tcp":
            out.add((SNI, port))
        elif not (proto == "udp" and port == QUIC_PORT):
            out.add((proto, port))
    return frozenset(out)


def grant_text(grant: Grant) -> str:
    """As logs show it: "tcp/443", "udp/any", "any", "tcp/443 verified" (a verified grant)."""
    proto, port = grant
    if proto is None:
        return "any"
    if proto == SNI:  # only a verified grant pays for its protocol's translation (decision lines call this)
        proto = grant_protocol(proto)
        return f"{proto}/{port} verified" if port is not None else f"{proto}/any verified"
    return f"{proto}/{port}" if port is not None else f"{proto}/any"


@dataclass(frozen=True, slots=True)
class PortRule:
    protocol: Protocol = Protocol.ALL
    port: int | None = None

    def grants(self) -> tuple[Grant, ...]:
        if self.protocol is Protocol.ALL:
            if self.port is None:
                return ((None, None),)
            return tuple((proto, self.port) for proto in ALL_PORT_PROTOCOLS)
        return ((self.protocol.lower(), self.port),)


@dataclass(frozen=True, slots=True)
class EgressRule:
    index: int
    matchers: tuple[NameMatcher, ...]
    ports: tuple[PortRule, ...] = ()

    def grants(self) -> frozenset[Grant]:
        if not self.ports:
            return frozenset({(None, None)})
        return frozenset(g for port in self.ports for g in port.grants())


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """Kubernetes label-selector semantics: every label and every expression must hold."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True, slots=True)
class Policy:
    namespace: str
    name: str
    selector: LabelSelector
    egress: tuple[EgressRule, ...]
    rejects: bool = False  # annotation fqdn.policy.dev/on-deny: reject
    verifies_sni: bool = False  # annotation fqdn.policy.dev/verify-sni: "true" (or --verify-sni)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: Pod) -> bool:
        return pod.namespace == self.namespace and self.selector.matches(pod.labels)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ips: tuple[str, ...] = ()  # canonical text form (ipaddress.ip_address(...).compressed)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ips_of_family(self, version: int) -> tuple[str, ...]:
        return tuple(ip for ip in self.ips if (":" in ip) == (version == 6))


# (protocol, first port, last port); a protocol with every port is (proto, 0, 65535).
PortRange = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class IpBlockRule:
    """A NetworkPolicy egress rule as composed (policy.spec.networkpolicy): networks and port ranges."""

    networks: tuple[str, ...]  # compressed CIDRs, `except` already subtracted
    ports: tuple[PortRange, ...] = ()  # empty: every protocol and port


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    selector: LabelSelector
    rules: tuple[IpBlockRule, ...]
    ignored: tuple[str, ...] = ()  # parts of the policy that are not composed, and why

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: Pod) -> bool:
        return pod.namespace == self.namespace and self.selector.matches(pod.labels)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Everything one source (a file, the API server) says: the unit that is swapped on reload."""

    policies: tuple[Policy, ...] = ()
    pods: tuple[Pod, ...] = ()
    network_policies: tuple[NetworkPolicy, ...] = ()  # composed by their ipBlock rules only
