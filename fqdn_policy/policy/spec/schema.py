"""The one definition of the policy format.

Written as an OpenAPI v3 structural schema because that is what a Kubernetes CRD needs; the file loader
validates documents against the same dict (policy.spec.schemacheck), the CRD generator copies it, and the docs
render their field table from it. Keys starting with `x-fqdn-` are ours: the validator uses them for
checks a schema cannot express, and `crd_schema()` strips them. Keys the CRD alone reads
(`x-kubernetes-validations`, CEL rules the API server runs; `allOf` regexes) are kept by `crd_schema()`
and ignored by policy.spec.schemacheck, whose `x-fqdn-check` functions make the same checks with better
messages; tests/unit/test_crd.py checks that both agree on a table of names and patterns.
"""

from __future__ import annotations

import copy
from typing import Any

PROJECT_GROUP = "fqdn.policy.dev"
VERSION = "v1alpha1"
GKE_GROUP = "networking.gke.io"
POLICY_KIND = "FQDNNetworkPolicy"
POLICY_API_VERSIONS = (f"{GKE_GROUP}/{VERSION}", f"{PROJECT_GROUP}/{VERSION}")

# What the API server can check of a name without our code: the characters, 1-63 per label, and (for
# patterns, as a second regex) `**` only as the whole first label before more labels. The API server
# runs them as RE2, so no look-arounds. policy.match.names makes the same checks for the file loader.
NAME_REGEX = r"^[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?$"
PATTERN_REGEX = r"^[A-Za-z0-9_*-]{1,63}(\.[A-Za-z0-9_*-]{1,63})*\.?$"
PATTERN_STARS_REGEX = r"^(\*\*\.)?([^*]|\*([^*]|$))+$"
# 253 characters, plus the trailing dot a name may carry (RFC 1035 section 2.3.4 without the length octets).
_NAME_LENGTH_RULE = {
    "rule": "size(self) <= 253 || (size(self) == 254 && self.endsWith('.'))",
    "message": "a name is at most 253 characters, not counting a trailing dot",
}

# Bounds on lists: the API server estimates a CEL rule's cost from how many times it can run, so an
# unbounded list under a rule makes the CRD refuse to install. Generous for hand-written policies.
MAX_EGRESS_RULES = 64
MAX_MATCHES_PER_RULE = 128
MAX_PORTS_PER_RULE = 64
MAX_SELECTOR_EXPRESSIONS = 32
MAX_SELECTOR_VALUES = 64

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
            "maxItems": MAX_SELECTOR_EXPRESSIONS,
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 317,
                        "description": "A label key.",
                    },
                    "operator": {
                        "type": "string",
                        "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        "description": "How the pod's value for `key` is compared with `values`.",
                    },
                    "values": {
                        "type": "array",
                        "description": "The values for In and NotIn; none for Exists and DoesNotExist.",
                        "maxItems": MAX_SELECTOR_VALUES,
                        "items": {"type": "string", "maxLength": 63},
                    },
                },
                "x-fqdn-check": "selector-requirement",
                "x-kubernetes-validations": [
                    {
                        "rule": "self.operator in ['In', 'NotIn'] ? "
                        "(has(self.values) && size(self.values) > 0) : "
                        "(!has(self.values) || size(self.values) == 0)",
                        "message": "In and NotIn need a non-empty `values`; "
                        "Exists and DoesNotExist take none",
                    }
                ],
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
            "x-kubernetes-validations": [_NAME_LENGTH_RULE],
        },
        "pattern": {
            "type": "string",
            "maxLength": 254,
            "pattern": PATTERN_REGEX,
            "allOf": [{"pattern": PATTERN_STARS_REGEX}],
            "description": "`*` matches within one label; a leading `**.` matches one or more labels; "
            "`*` alone matches every name.",
            "x-fqdn-check": "pattern",
            "x-kubernetes-validations": [_NAME_LENGTH_RULE],
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
    "description": "Which pods of the namespace the policy selects, and where they may connect by name.",
    "required": ["podSelector"],
    "properties": {
        "podSelector": _LABEL_SELECTOR,
        "egress": {
            "type": "array",
            "description": "Allow rules; a selected pod may reach only what some rule allows.",
            "maxItems": MAX_EGRESS_RULES,
            "items": {
                "type": "object",
                "required": ["matches"],
                "properties": {
                    "matches": {
                        "type": "array",
                        "description": "Names and patterns this rule allows; one matching is enough.",
                        "minItems": 1,
                        "maxItems": MAX_MATCHES_PER_RULE,
                        "items": _MATCH,
                    },
                    "ports": {
                        "type": "array",
                        "description": "Missing or empty: every protocol and port.",
                        "maxItems": MAX_PORTS_PER_RULE,
                        "items": _PORT,
                    },
                },
            },
        },
    },
}

# Reserved: nothing writes a policy's status in v1alpha1 (docs/kubernetes.md says why). Any content is
# kept, so a later version can fill it without a schema change breaking older agents.
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Reserved; not written by fqdn-policy v1alpha1.",
    "x-fqdn-open": True,
    "x-kubernetes-preserve-unknown-fields": True,
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

# Behaviour switches live in annotations, so the spec stays exactly GKE's (docs/drops.md).
ON_DENY_ANNOTATION = f"{PROJECT_GROUP}/on-deny"
ON_DENY_VALUES = ("drop", "reject")
VERIFY_SNI_ANNOTATION = f"{PROJECT_GROUP}/verify-sni"
VERIFY_SNI_VALUES = ("true", "false")

_POLICY_METADATA: dict[str, Any] = {
    **_METADATA,
    "properties": {
        **_METADATA["properties"],
        "annotations": {
            "type": "object",
            "description": "Other annotations are accepted and ignored.",
            "additionalProperties": {"type": "string"},
            "properties": {
                ON_DENY_ANNOTATION: {
                    "type": "string",
                    "enum": list(ON_DENY_VALUES),
                    "description": "What happens to a packet no rule allows, for the pods this policy "
                    "selects: `drop` (default, the client times out) or `reject` (TCP reset, ICMP "
                    "administratively prohibited). A pod selected by any rejecting policy is rejected.",
                },
                VERIFY_SNI_ANNOTATION: {
                    "type": "string",
                    "enum": list(VERIFY_SNI_VALUES),
                    "description": "`true`: a new TCP connection to an address the pod may reach only "
                    "through this kind of policy must present, in its first bytes, a name (TLS "
                    "server_name; HTTP Host on port 80) that a rule allowing that port matches, or it is "
                    "reset; UDP 443 (QUIC) to such addresses is not allowed (docs/sni.md).",
                },
            },
        },
    },
}

POLICY_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"type": "string", "enum": list(POLICY_API_VERSIONS)},
        "kind": {"type": "string", "enum": [POLICY_KIND]},
        "metadata": _POLICY_METADATA,
        "spec": SPEC_SCHEMA,
        "status": STATUS_SCHEMA,
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


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if not k.startswith("x-fqdn-")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def crd_schema() -> dict[str, Any]:
    """The spec schema as a CRD's openAPIV3Schema wants it: our private keys removed."""
    return _strip(copy.deepcopy(SPEC_SCHEMA))


def crd_document_schema() -> dict[str, Any]:
    """A whole FQDNNetworkPolicy object as the CRD's openAPIV3Schema: the API server owns apiVersion,
    kind and metadata (a CRD may not constrain metadata beyond name), the spec and status are ours."""
    return {
        "type": "object",
        "description": "Egress allowed by domain name for the selected pods (same spec as "
        f"{GKE_GROUP}/{VERSION}).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": crd_schema(),
            "status": _strip(copy.deepcopy(STATUS_SCHEMA)),
        },
    }
