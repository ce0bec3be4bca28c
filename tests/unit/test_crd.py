"""The CRD: generated from fqdn_policy.policy.spec.schema, structural, and agreeing with the file loader's checks.

The API server is not here, so each of its checks is run by the library that implements the same
language: JSON-Schema keywords by `jsonschema`, regexes by RE2 (the API server's Go regexp is RE2),
CEL rules by `cel-python`.
"""

from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import re2
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fqdn_policy.cli.main import main
from fqdn_policy.policy.match import names
from fqdn_policy.policy.spec import crd
from fqdn_policy.policy.spec.schema import (
    NAME_REGEX,
    PATTERN_REGEX,
    PATTERN_STARS_REGEX,
    POLICY_DOCUMENT_SCHEMA,
    crd_document_schema,
)
from fqdn_policy.policy.spec.schemacheck import validate

ROOT = Path(__file__).resolve().parents[2]
MATCH_SCHEMA = crd_document_schema()["properties"]["spec"]["properties"]["egress"]["items"]["properties"][
    "matches"
]["items"]
REQUIREMENT_SCHEMA = crd_document_schema()["properties"]["spec"]["properties"]["podSelector"]["properties"][
    "matchExpressions"
]["items"]
LOADER_REQUIREMENT_SCHEMA = POLICY_DOCUMENT_SCHEMA["properties"]["spec"]["properties"]["podSelector"][
    "properties"
]["matchExpressions"]["items"]


def test_deploy_crd_is_the_generators_output():
    assert (ROOT / "deploy" / "crd.yaml").read_text() == crd.render(), (
        "deploy/crd.yaml is stale: run `fqdn-policy crd --output deploy/crd.yaml`"
    )


def test_cli_prints_and_writes_the_crd(capsys, tmp_path):
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd.render()
    out = tmp_path / "crd.yaml"
    assert main(["crd", "--output", str(out)]) == 0
    assert out.read_text() == crd.render()


def test_docs_field_table_is_the_generators_output(capsys):
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    documented = docs.split("<!-- fields:start -->\n")[1].split("<!-- fields:end -->")[0]
    assert documented == crd.field_table(), "docs/kubernetes.md is stale: paste `fqdn-policy crd --fields`"
    assert main(["crd", "--fields"]) == 0
    assert capsys.readouterr().out == crd.field_table()
    assert "| `spec.egress[].ports[].port` | integer | 1 to 65535 |" in documented


def test_crd_names_match_gkes():
    spec = yaml.safe_load(crd.render())["spec"]
    assert spec["group"] == "fqdn.policy.dev" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "FQDNNetworkPolicy",
        "listKind": "FQDNNetworkPolicyList",
        "plural": "fqdnnetworkpolicies",
        "singular": "fqdnnetworkpolicy",
        "shortNames": ["fqdnnp"],
    }
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, child in node.get("properties", {}).items():
            yield from _walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _walk(node[key], f"{path}[{key}]")


FORBIDDEN_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable"}


def test_schema_is_structural():
    """The rules of https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
    that a schema can break without an API server noticing until `kubectl apply`."""
    schema = crd_document_schema()
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in _walk(schema):
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "$ref" not in node, path
        for junctor in ("allOf", "anyOf", "oneOf", "not"):
            branches = node.get(junctor, [])
            for branch in branches if isinstance(branches, list) else [branches]:
                assert not FORBIDDEN_IN_JUNCTORS & set(branch), f"{path}.{junctor}: {branch}"
                assert set(branch.get("properties", {})) <= set(node.get("properties", {})), path
                assert set(branch.get("required", [])) <= set(node.get("properties", {})), path
        assert not any(k.startswith("x-fqdn-") for k in node), f"{path} leaks a private key"


def _cel_rules(node: Any, path: str = ""):
    for sub_path, sub in _walk(node, path):
        for rule in sub.get("x-kubernetes-validations", []):
            yield sub_path, rule


def test_every_cel_rule_compiles():
    env = celpy.Environment()
    rules = list(_cel_rules(crd_document_schema()))
    assert len(rules) == 3
    for path, rule in rules:
        assert env.compile(rule["rule"]) is not None, path
        assert rule["message"], path


def test_regexes_are_re2():
    for regex in (NAME_REGEX, PATTERN_REGEX, PATTERN_STARS_REGEX):
        re2.compile(regex)


def _cel_holds(rule: str, value: Any) -> bool:
    env = celpy.Environment()
    return bool(env.program(env.compile(rule)).evaluate({"self": celpy.json_to_cel(value)}))


def crd_accepts(match: dict[str, str]) -> bool:
    """What the API server would say of one `matches` item: the schema keywords, then the CEL rules."""
    try:
        jsonschema.Draft4Validator(MATCH_SCHEMA).validate(match)
    except jsonschema.ValidationError:
        return False
    (field, value) = next(iter(match.items()))
    field_schema = MATCH_SCHEMA["properties"][field]
    regexes = [field_schema["pattern"], *(b["pattern"] for b in field_schema.get("allOf", []))]
    for regex in regexes:
        if not re2.search(regex, value):  # the API server's regex engine agrees with Python's here
            return False
    return all(
        _cel_holds(r["rule"], value) for r in MATCH_SCHEMA["properties"][field]["x-kubernetes-validations"]
    )


def loader_accepts(field: str, value: str) -> bool:
    check = names.validate_name if field == "name" else names.validate_pattern
    try:
        check(value)
    except names.InvalidName:
        return False
    return True


LONG_LABEL = "a" * 63
CASES = [
    ("name", "www.google.com", True),
    ("name", "WWW.Google.COM.", True),
    ("name", "_srv._tcp.example.com", True),
    ("name", "a..com", False),
    ("name", ".a.com", False),
    ("name", "*.a.com", False),
    ("name", "a b.com", False),
    ("name", f"{LONG_LABEL}.com", True),
    ("name", f"{LONG_LABEL}a.com", False),
    ("name", ".".join([LONG_LABEL] * 3 + ["a" * 61]), True),  # 253
    ("name", ".".join([LONG_LABEL] * 3 + ["a" * 61]) + ".", True),  # 253 and the root dot
    ("name", ".".join([LONG_LABEL] * 3 + ["a" * 62]), False),  # 254
    ("pattern", "*", True),
    ("pattern", "*.yourdomain.com", True),
    ("pattern", "**.googleapis.com", True),
    ("pattern", "api-*.example.com", True),
    ("pattern", "*a*.example.com", True),
    ("pattern", "x.**.com", False),
    ("pattern", "**", False),
    ("pattern", "**.", False),
    ("pattern", "a**.com", False),
    ("pattern", "***.com", False),
    ("pattern", "*..com", False),
    ("pattern", "*.com/", False),
    ("pattern", f"*{LONG_LABEL}.com", False),
]


@pytest.mark.parametrize(("field", "value", "valid"), CASES)
def test_crd_and_loader_agree_on_names(field, value, valid):
    assert crd_accepts({field: value}) is valid
    assert loader_accepts(field, value) is valid


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(["name", "pattern"]),
    value=st.text(alphabet="ab-_*.", min_size=1, max_size=12),
)
def test_crd_and_loader_agree_on_any_short_string(field, value):
    assert crd_accepts({field: value}) == loader_accepts(field, value), value


@pytest.mark.parametrize(
    ("requirement", "valid"),
    [
        ({"key": "tier", "operator": "In", "values": ["web"]}, True),
        ({"key": "tier", "operator": "In"}, False),
        ({"key": "tier", "operator": "NotIn", "values": []}, False),
        ({"key": "tier", "operator": "Exists"}, True),
        ({"key": "tier", "operator": "Exists", "values": []}, True),
        ({"key": "tier", "operator": "DoesNotExist", "values": ["x"]}, False),
    ],
)
def test_selector_rule_agrees_with_the_loader(requirement, valid):
    (rule,) = REQUIREMENT_SCHEMA["x-kubernetes-validations"]
    assert _cel_holds(rule["rule"], requirement) is valid
    hand = validate(requirement, LOADER_REQUIREMENT_SCHEMA)
    assert (not hand) is valid, hand


def test_list_bounds_apply_to_files_too():
    doc = {
        "apiVersion": "fqdn.policy.dev/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "metadata": {"name": "big"},
        "spec": {"podSelector": {}, "egress": [{"matches": [{"name": "a.com"}]}] * 65},
    }
    problems = validate(doc, POLICY_DOCUMENT_SCHEMA)
    assert [(p.field, p.message) for p in problems] == [("spec.egress", "has 65 items; the limit is 64")]
