"""Kubernetes-shaped documents (dicts) to model objects.

Shared by the file loader and the Kubernetes watcher: both hand over the same dicts, so both get the
same validation and the same errors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from fqdn_policy.policy.match import names
from fqdn_policy.policy.model import EgressRule, LabelSelector, Pod, Policy, PortRule, Protocol, Requirement
from fqdn_policy.policy.spec.schema import (
    ON_DENY_ANNOTATION,
    POD_DOCUMENT_SCHEMA,
    POLICY_DOCUMENT_SCHEMA,
    POLICY_KIND,
    VERIFY_SNI_ANNOTATION,
)
from fqdn_policy.policy.spec.schemacheck import Problem, validate

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class InvalidDocument(Exception):
    problems: tuple[Problem, ...]

    def __str__(self) -> str:
        return "; ".join(f"{p.field}: {p.message}" for p in self.problems)


def document_kind(doc: Any) -> str | None:
    return doc.get("kind") if isinstance(doc, dict) else None


def policy_from_document(doc: dict[str, Any]) -> Policy:
    problems = validate(doc, POLICY_DOCUMENT_SCHEMA)
    if problems:
        raise InvalidDocument(tuple(problems))
    meta, spec = doc["metadata"], doc["spec"]
    return Policy(
        namespace=meta.get("namespace", DEFAULT_NAMESPACE),
        name=meta["name"],
        selector=selector_from_document(spec["podSelector"]),
        egress=tuple(_rule(i, rule) for i, rule in enumerate(spec.get("egress") or [])),
        rejects=(meta.get("annotations") or {}).get(ON_DENY_ANNOTATION) == "reject",
        verifies_sni=(meta.get("annotations") or {}).get(VERIFY_SNI_ANNOTATION) == "true",
    )


def pod_from_document(doc: dict[str, Any]) -> Pod:
    problems = validate(doc, POD_DOCUMENT_SCHEMA)
    if problems:
        raise InvalidDocument(tuple(problems))
    meta, status = doc["metadata"], doc.get("status") or {}
    raw_ips = [status["podIP"]] if status.get("podIP") else []
    raw_ips += [entry["ip"] for entry in status.get("podIPs") or []]
    ips = tuple(dict.fromkeys(ipaddress.ip_address(ip).compressed for ip in raw_ips))
    return Pod(
        namespace=meta.get("namespace", DEFAULT_NAMESPACE),
        name=meta["name"],
        labels=dict(meta.get("labels") or {}),
        ips=ips,
    )


def selector_from_document(raw: dict[str, Any]) -> LabelSelector:
    return LabelSelector(
        match_labels=tuple(sorted((raw.get("matchLabels") or {}).items())),
        match_expressions=tuple(
            Requirement(e["key"], e["operator"], frozenset(e.get("values") or ()))
            for e in raw.get("matchExpressions") or []
        ),
    )


def _rule(index: int, raw: dict[str, Any]) -> EgressRule:
    matchers = tuple(
        names.compile_name(m["name"]) if "name" in m else names.compile_pattern(m["pattern"])
        for m in raw["matches"]
    )
    ports = tuple(
        PortRule(protocol=Protocol(p.get("protocol") or "ALL"), port=p.get("port"))
        for p in raw.get("ports") or []
    )
    return EgressRule(index=index, matchers=matchers, ports=ports)


__all__ = ["POLICY_KIND", "InvalidDocument", "document_kind", "pod_from_document", "policy_from_document"]
