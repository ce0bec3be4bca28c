"""Would a connection from this pod to this name be allowed, by which rule, or why not.

Pure, over a PolicyIndex: the same selection and matching the DNS path uses (policy.match.ruleindex,
policy.match.names), so `fqdn-policy explain` cannot disagree with what the agent does. It answers for the
policy only; whether the name's addresses are in the kernel sets right now is the caller's to add.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from fqdn_policy.policy.match.names import InvalidName, validate_name
from fqdn_policy.policy.match.ruleindex import PolicyIndex, RuleRef, RuleSet
from fqdn_policy.policy.model import Grant, grant_protocol, grant_text

PROTOCOLS = ("tcp", "udp", "sctp")


class Verdict(StrEnum):
    ALLOWED = "allowed"  # a rule of a policy selecting the pod matches the name (and port)
    NOT_ENFORCED = "not-enforced"  # no policy selects the pod: everything it sends is allowed
    UNKNOWN_POD = "unknown-pod"  # the policy source has no such pod
    NAME_NOT_ALLOWED = "name-not-allowed"  # selected, but no rule matches the name
    PORT_NOT_ALLOWED = "port-not-allowed"  # a rule matches the name, but none opens this port/protocol
    UNMATCHABLE_NAME = "unmatchable-name"  # not a valid DNS name; no rule can match it


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: RuleRef
    grants: frozenset[Grant]


@dataclass(frozen=True, slots=True)
class Explanation:
    verdict: Verdict
    pod: str
    host: str  # normalised when valid
    protocol: str | None  # lower case, or None: the question is about the name, any port
    port: int | None
    pod_ips: tuple[str, ...]
    policies: tuple[str, ...]  # policies selecting the pod
    matches: tuple[RuleMatch, ...]  # rules whose name or pattern matches the host
    allowed_by: tuple[RuleRef, ...]  # of those, the ones that also open the port/protocol
    reason: str
    # What NetworkPolicy ipBlocks allow this pod by address, whatever the name: if the name's
    # addresses fall in one, the connection passes even when no FQDN rule matches.
    ip_blocks: tuple[str, ...] = ()
    # How a denied connection fails: "drop" (it times out) or "reject" (refused at once: the agent's
    # --reject, or a selecting policy's fqdn.policy.dev/on-deny annotation); None when not denied.
    on_deny: str | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict in (Verdict.ALLOWED, Verdict.NOT_ENFORCED)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "allowed": self.allowed,
            "pod": self.pod,
            "host": self.host,
            "protocol": self.protocol,
            "port": self.port,
            "pod_ips": list(self.pod_ips),
            "policies": list(self.policies),
            "matches": [
                {"rule": str(m.rule), "grants": sorted(grant_text(g) for g in m.grants)} for m in self.matches
            ],
            "allowed_by": [str(r) for r in self.allowed_by],
            "reason": self.reason,
            "ip_blocks": list(self.ip_blocks),
            "on_deny": self.on_deny,
        }


def grant_covers(grant: Grant, protocol: str | None, port: int | None) -> bool:
    """Whether `grant` opens (protocol, port). None asks less: protocol None, about the name on any
    grant; port None, about some port of the protocol."""
    if protocol is None:
        return True
    granted_proto, granted_port = grant
    if granted_proto is None:
        return True
    if grant_protocol(granted_proto) != protocol:
        return False
    return granted_port is None or port is None or granted_port == port


def connection_text(protocol: str | None, port: int | None) -> str:
    if protocol is None:
        return "any port"
    return f"{protocol}/{port}" if port is not None else protocol


def ip_blocks(index: PolicyIndex, pod_ips: tuple[str, ...]) -> tuple[str, ...]:
    """`203.0.113.0/24` or `203.0.113.0/24 tcp/5432-5440`: a pod's NetworkPolicy ipBlock allowances."""
    ips = set(pod_ips)
    out = set()
    for ip, network, ports in index.ipblock_elements():
        if ip in ips:
            if ports is None:
                out.add(network)
            else:
                proto, first, last = ports
                out.add(f"{network} {proto}/{first}" + (f"-{last}" if last != first else ""))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class _Asked:
    """The question, normalised: a port without a protocol means tcp."""

    pod: str
    host: str
    protocol: str | None
    port: int | None

    def answer(self, verdict: Verdict, reason: str, ips: tuple[str, ...] = ()) -> Explanation:
        """For a pod no policy selects: nothing is matched, nothing is denied."""
        return Explanation(verdict, self.pod, self.host, self.protocol, self.port, ips, (), (), (), reason)


class _Judgement(NamedTuple):
    verdict: Verdict
    reason: str
    name: str  # the host, normalised when valid
    matches: tuple[RuleMatch, ...] = ()
    allowed_by: tuple[RuleRef, ...] = ()


def explain(
    index: PolicyIndex,
    pod_key: str,
    host: str,
    protocol: str | None = None,
    port: int | None = None,
    reject_all: bool = False,
) -> Explanation:
    """`protocol` is tcp, udp or sctp (a port without a protocol means tcp); None with no port.
    `reject_all`: the agent runs with --reject (unknown offline: then only annotations count)."""
    if port is not None and protocol is None:
        protocol = "tcp"
    asked = _Asked(pod_key, host, protocol.lower() if protocol else None, port)
    client = index.pod(pod_key)
    if client is None:
        return asked.answer(Verdict.UNKNOWN_POD, f"no pod {pod_key} in the policy source (namespace/name)")
    if client.rules is None:
        return asked.answer(
            Verdict.NOT_ENFORCED,
            f"no FQDNNetworkPolicy in namespace {client.pod.namespace} selects {pod_key}: "
            "its egress is not enforced",
            client.pod.ips,
        )
    return _explain_selected(index, asked, client.pod.ips, client.rules, reject_all)


def _explain_selected(
    index: PolicyIndex, asked: _Asked, ips: tuple[str, ...], rules: RuleSet, reject_all: bool
) -> Explanation:
    """For a pod some policy selects: the rules' verdict, the ipBlocks that still let it through by
    address, and how a denial fails."""
    policies = tuple(p.key for p in rules.policies)
    judged = _judge(asked, rules, policies)
    on_deny = None
    if policies and judged.verdict not in (Verdict.ALLOWED, Verdict.NOT_ENFORCED):
        on_deny = "reject" if reject_all or any(p.rejects for p in rules.policies) else "drop"
    return Explanation(
        judged.verdict,
        asked.pod,
        judged.name,
        asked.protocol,
        asked.port,
        ips,
        policies,
        judged.matches,
        judged.allowed_by,
        judged.reason,
        ip_blocks(index, ips) if policies else (),
        on_deny,
    )


def _judge(asked: _Asked, rules: RuleSet, policies: tuple[str, ...]) -> _Judgement:
    """The rules' verdict on the name, then on the port, with the reason as `explain` prints it."""
    try:
        name = validate_name(asked.host)
    except InvalidName as error:
        return _Judgement(Verdict.UNMATCHABLE_NAME, f"{error}: no rule can match it", asked.host)
    matches = _rule_matches(rules, name)
    if not matches:
        return _Judgement(
            Verdict.NAME_NOT_ALLOWED,
            f"{asked.pod} is selected by {', '.join(policies)}, and no egress rule matches {name}",
            name,
        )
    protocol, port = asked.protocol, asked.port
    allowed_by = tuple(m.rule for m in matches if any(grant_covers(g, protocol, port) for g in m.grants))
    if not allowed_by:
        opened = sorted({grant_text(g) for m in matches for g in m.grants})
        return _Judgement(
            Verdict.PORT_NOT_ALLOWED,
            f"{name} matches {', '.join(str(m.rule) for m in matches)}, which open only "
            f"{', '.join(opened)}, not {connection_text(protocol, port)}",
            name,
            matches,
        )
    on = f" on {connection_text(protocol, port)}" if protocol else ""
    return _Judgement(
        Verdict.ALLOWED,
        f"{name}{on} is allowed by {', '.join(str(r) for r in allowed_by)} once {asked.pod} resolves it "
        "through the proxy",
        name,
        matches,
        allowed_by,
    )


def _rule_matches(rules: RuleSet, name: str) -> tuple[RuleMatch, ...]:
    """Every rule, by name or pattern, of the selecting policies that matches `name` (valid, normalised)."""
    return tuple(
        RuleMatch(RuleRef(policy.key, rule.index, matcher.text), rule.grants())
        for policy in rules.policies
        for rule in policy.egress
        for matcher in rule.matchers
        if matcher.matches(name)
    )
