"""Kubernetes NetworkPolicy egress `ipBlock` rules, composed with FQDN policies.

GKE allows a flow when either kind of policy allows it. An add-on enforcer can honour the part of a
NetworkPolicy that is addresses: egress rules whose peers are `ipBlock`s (CIDR minus `except`) or that
have no peers at all (every destination), with their ports. Those become kernel elements
`pod . network [. protocol . port range]` for the pods an FQDN policy enforces, checked in the same chain
as the FQDN allowances. Peers by pod or namespace selector are not composed: their addresses are pods of
the whole cluster, which a node-local agent does not watch (exempt the cluster's ranges instead, or let
the CNI enforce them); named ports cannot be resolved without the destination pod's spec. Both are
reported as `ignored` so the agent can log them once per policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from fqdn_policy.policy.model import IpBlockRule, NetworkPolicy, Pod, PortRange
from fqdn_policy.policy.spec.documents import DEFAULT_NAMESPACE, InvalidDocument, selector_from_document
from fqdn_policy.policy.spec.schema import SPEC_SCHEMA
from fqdn_policy.policy.spec.schemacheck import Problem, validate

NETWORK_POLICY_KIND = "NetworkPolicy"
NETWORK_POLICY_API_VERSION = "networking.k8s.io/v1"
_PROTOCOLS = ("TCP", "UDP", "SCTP")

# The subset of networking.k8s.io/v1 NetworkPolicy this reader uses; the rest is Kubernetes' to check.
_PEER: dict[str, Any] = {
    "type": "object",
    "x-fqdn-open": True,  # podSelector / namespaceSelector peers are reported, not composed
    "properties": {
        "ipBlock": {
            "type": "object",
            "required": ["cidr"],
            "properties": {
                "cidr": {"type": "string", "x-fqdn-check": "cidr"},
                "except": {"type": "array", "items": {"type": "string", "x-fqdn-check": "cidr"}},
            },
        }
    },
}
_NP_PORT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "protocol": {"type": "string", "enum": list(_PROTOCOLS)},
        "port": {"x-fqdn-check": "int-or-name"},
        "endPort": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
}
NETWORK_POLICY_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "x-fqdn-open": True,
    "properties": {
        "apiVersion": {"type": "string", "enum": [NETWORK_POLICY_API_VERSION]},
        "kind": {"type": "string", "enum": [NETWORK_POLICY_KIND]},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "x-fqdn-open": True,
            "properties": {"name": {"type": "string", "minLength": 1}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "required": ["podSelector"],
            "x-fqdn-open": True,  # ingress is not this agent's business
            "properties": {
                "podSelector": SPEC_SCHEMA["properties"]["podSelector"],
                "policyTypes": {"type": "array", "items": {"type": "string", "enum": ["Ingress", "Egress"]}},
                "egress": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "to": {"type": "array", "items": _PEER},
                            "ports": {"type": "array", "items": _NP_PORT},
                        },
                    },
                },
            },
        },
    },
}

# What the kernel holds: pod address, destination network, and (protocol, first, last) or None for all.
IpBlockElement = tuple[str, str, PortRange | None]


def network_policy_from_document(doc: dict[str, Any]) -> NetworkPolicy:
    problems = validate(doc, NETWORK_POLICY_DOCUMENT_SCHEMA)
    if not problems:
        problems = _port_problems(doc["spec"].get("egress") or [])
    if problems:
        raise InvalidDocument(tuple(problems))
    meta, spec = doc["metadata"], doc["spec"]
    ignored: list[str] = []
    rules: list[IpBlockRule] = []
    if _restricts_egress(spec):
        for i, raw in enumerate(spec.get("egress") or []):
            rule = _rule(i, raw, ignored)
            if rule is not None:
                rules.append(rule)
    return NetworkPolicy(
        namespace=meta.get("namespace", DEFAULT_NAMESPACE),
        name=meta["name"],
        selector=selector_from_document(spec["podSelector"]),
        rules=tuple(rules),
        ignored=tuple(ignored),
    )


def _restricts_egress(spec: dict[str, Any]) -> bool:
    """Kubernetes' default: Egress is a policy type when listed, or when unlisted and egress is given."""
    types = spec.get("policyTypes")
    return "Egress" in types if types is not None else "egress" in spec


def _rule(index: int, raw: dict[str, Any], ignored: list[str]) -> IpBlockRule | None:
    peers = raw.get("to") or []
    networks: list[str] = []
    if not peers:
        networks = ["0.0.0.0/0", "::/0"]  # no peers: every destination
    for j, peer in enumerate(peers):
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            networks += subtract(block["cidr"], block.get("except") or [])
        else:
            kinds = " and ".join(k for k in ("podSelector", "namespaceSelector") if k in peer) or "peer"
            ignored.append(f"egress[{index}].to[{j}]: {kinds} peers are not composed (pod addresses)")
    ports: list[PortRange] = []
    for j, port in enumerate(raw.get("ports") or []):
        protocol = (port.get("protocol") or "TCP").lower()
        number = port.get("port")
        if isinstance(number, str):
            ignored.append(f"egress[{index}].ports[{j}]: named port {number!r} is not composed")
            continue
        if number is None:
            ports.append((protocol, 0, 65535))
        else:
            ports.append((protocol, number, port.get("endPort") or number))
    if not networks or (raw.get("ports") and not ports):
        return None  # nothing composable left: allowing more than the rule says is never right
    return IpBlockRule(tuple(dict.fromkeys(networks)), tuple(dict.fromkeys(ports)))


def _port_problems(egress: list[dict[str, Any]]) -> list[Problem]:
    problems = []
    for i, rule in enumerate(egress):
        for j, port in enumerate(rule.get("ports") or []):
            number, end = port.get("port"), port.get("endPort")
            path = ("spec", "egress", i, "ports", j)
            if isinstance(number, int) and not 1 <= number <= 65535:
                problems.append(Problem((*path, "port"), f"{number} is not a port (1-65535)"))
            if end is not None and not (isinstance(number, int) and end >= number):
                problems.append(Problem((*path, "endPort"), "needs a numeric port no greater than it"))
    return problems


def subtract(cidr: str, excepts: Iterable[str]) -> list[str]:
    """`cidr` minus every `except` range, as the fewest CIDRs (what an interval set can hold)."""
    remaining = [ipaddress.ip_network(cidr, strict=False)]
    for text in excepts:
        hole = ipaddress.ip_network(text, strict=False)
        next_remaining = []
        for net in remaining:
            if hole.version != net.version or not net.overlaps(hole):
                next_remaining.append(net)
            elif net.subnet_of(hole):
                continue
            else:
                next_remaining.extend(net.address_exclude(hole))
        remaining = next_remaining
    return [n.compressed for n in sorted(remaining, key=lambda n: (n.version, n))]


def ipblock_elements(
    network_policies: Iterable[NetworkPolicy], enforced_pods: Iterable[Pod]
) -> frozenset[IpBlockElement]:
    """Every element the kernel needs so that enforced pods keep what NetworkPolicies allow them."""
    by_namespace: dict[str, list[NetworkPolicy]] = {}
    for np in network_policies:
        by_namespace.setdefault(np.namespace, []).append(np)
    out: set[IpBlockElement] = set()
    for pod in enforced_pods:
        for np in by_namespace.get(pod.namespace, ()):
            if not np.selects(pod):
                continue
            for rule in np.rules:
                for net in rule.networks:
                    for ip in pod.ips_of_family(6 if ":" in net else 4):
                        if rule.ports:
                            out.update((ip, net, port) for port in rule.ports)
                        else:
                            out.add((ip, net, None))
    return frozenset(out)
