"""The one definition of the policy format.

Written as an OpenAPI v3 structural schema because that is what a Kubernetes CRD needs; the file loader
validates documents against the same dict (policy.schemacheck), the CRD generator copies it, and the docs
render their field table from it. Keys starting with `x-fqdn-` are ours: the validator uses them for
checks a schema cannot express, and `crd_schema()` strips them.
"""

from __future__ import annotations

import copy
from typing import Any

PROJECT_GROUP = "fqdn.policy.dev"
VERSION = "v1alpha1"
GKE_GROUP = "networking.gke.io"
POLICY_KIND = "FQDNNetworkPolicy"
POLICY_API_VERSIONS = (f"{GKE_GROUP}/{VERSION}", f"{PROJECT_GROUP}/{VERSION}")

# A regex is the most a CRD can check of a name; policy.names does the full check (label lengths, `**`).
NAME_REGEX = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$"
PATTERN_REGEX = r"^(\*\*\.)?[A-Za-z0-9_*-]+(\.[A-Za-z0-9_*-]+)*\.?$"

_LABEL_SELECTOR: dict[str, Any] = {
    "type": "object",
    "description": "Selects pods of the policy's namespace by label; empty selects every pod there.",
    "properties": {
        "matchLabels": {
            "type": "object",
            "description": "Every key must have exactly this value (AND).",
            "additionalProperties": {"type": "string", "maxLength": 63},
        },
        "matchExpressions": {
            "type": "array",
            "description": "Every expression must hold (AND), together with matchLabels.",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string", "minLength": 1, "maxLength": 317},
                    "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string", "maxLength": 63}},
                },
                "x-fqdn-check": "selector-requirement",
            },
        },
    },
}

_MATCH: dict[str, Any] = {
    "type": "object",
    "description": "Exactly one of `name` (exact) or `pattern` (wildcards).",
    "properties": {
        "name": {
            "type": "string",
            "maxLength": 254,
            "pattern": NAME_REGEX,
            "description": "An exact name, case-insensitive, trailing dot optional.",
            "x-fqdn-check": "name",
        },
        "pattern": {
            "type": "string",
            "maxLength": 254,
            "pattern": PATTERN_REGEX,
            "description": "`*` matches within one label; a leading `**.` matches one or more labels; "
            "`*` alone matches every name.",
            "x-fqdn-check": "pattern",
        },
    },
    "oneOf": [{"required": ["name"]}, {"required": ["pattern"]}],
}

_PORT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "protocol": {
            "type": "string",
            "enum": ["TCP", "UDP", "ALL"],
            "description": "TCP, UDP or ALL; missing means ALL.",
        },
        "port": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "description": "Destination port; missing means every port of the protocol.",
        },
    },
}

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["podSelector"],
    "properties": {
        "podSelector": _LABEL_SELECTOR,
        "egress": {
            "type": "array",
            "description": "Allow rules; a selected pod may reach only what some rule allows.",
            "items": {
                "type": "object",
                "required": ["matches"],
                "properties": {
                    "matches": {"type": "array", "minItems": 1, "items": _MATCH},
                    "ports": {
                        "type": "array",
                        "description": "Missing or empty: every protocol and port.",
                        "items": _PORT,
                    },
                },
            },
        },
    },
}

_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "x-fqdn-open": True,  # other Kubernetes metadata (uid, annotations, ...) is accepted and ignored
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

POLICY_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"type": "string", "enum": list(POLICY_API_VERSIONS)},
        "kind": {"type": "string", "enum": [POLICY_KIND]},
        "metadata": _METADATA,
        "spec": SPEC_SCHEMA,
        "status": {"type": "object", "x-fqdn-open": True},
    },
}

POD_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "status"],
    "x-fqdn-open": True,  # a real Pod has spec and much more; only these fields matter here
    "properties": {
        "apiVersion": {"type": "string", "enum": ["v1"]},
        "kind": {"type": "string", "enum": ["Pod"]},
        "metadata": _METADATA,
        "status": {
            "type": "object",
            "x-fqdn-open": True,
            "properties": {
                "podIP": {"type": "string", "x-fqdn-check": "ip"},
                "podIPs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["ip"],
                        "properties": {"ip": {"type": "string", "x-fqdn-check": "ip"}},
                    },
                },
            },
        },
    },
}


def crd_schema() -> dict[str, Any]:
    """The spec schema as a CRD's openAPIV3Schema wants it: our private keys removed."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.startswith("x-fqdn-")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(copy.deepcopy(SPEC_SCHEMA))
