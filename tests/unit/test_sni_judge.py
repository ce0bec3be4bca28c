"""The verify-sni decision (fqdn_policy.policy.decide.snijudge): which presented names a verifying
policy lets through to which ports, for which pods."""

from __future__ import annotations

import textwrap

from fqdn_policy.policy.decide.snijudge import judge_presented
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

POLICIES = textwrap.dedent("""
    apiVersion: networking.gke.io/v1alpha1
    kind: FQDNNetworkPolicy
    metadata:
      name: verified
      namespace: default
      annotations: {fqdn.policy.dev/verify-sni: "true"}
    spec:
      podSelector: {matchLabels: {app: c}}
      egress:
      - matches: [{name: good.example}, {pattern: "*.cdn.example"}]
        ports: [{protocol: TCP, port: 443}]
      - matches: [{name: web.example}]
    ---
    apiVersion: networking.gke.io/v1alpha1
    kind: FQDNNetworkPolicy
    metadata: {name: plain, namespace: default}
    spec:
      podSelector: {matchLabels: {app: c}}
      egress:
      - matches: [{name: plain.example}]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: c, namespace: default, labels: {app: c}}
    status: {podIP: 10.244.1.10}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: free, namespace: default, labels: {app: free}}
    status: {podIP: 10.244.1.11}
""")
INDEX = PolicyIndex(load_text(POLICIES))


def judge(name, port=443, src="10.244.1.10", refused=None, table=None):
    return judge_presented(
        INDEX,
        table if table is not None else AllowTable(TTLPolicy()),
        src,
        "198.51.100.7",
        port,
        name,
        refused,
    )


def test_a_name_of_a_verifying_rule_on_its_port_is_allowed_by_that_rule():
    verdict = judge("good.example")
    assert verdict.allowed and verdict.pod == "default/c" and verdict.reason is None
    assert [str(r) for r in verdict.rules] == ["default/verified#egress[0] (good.example)"]


def test_patterns_match_as_in_dns():
    assert judge("a.cdn.example").allowed
    assert not judge("cdn.example").allowed


def test_the_port_must_be_one_the_rule_grants():
    assert not judge("good.example", port=8443).allowed
    assert judge("web.example", port=8443).allowed  # a rule without ports grants verified TCP on every port


def test_a_name_only_a_non_verifying_policy_allows_is_not_enough():
    """The flow reached the check because only verifying grants allow its destination: a name some
    other policy allows elsewhere does not open this address."""
    verdict = judge("plain.example")
    assert not verdict.allowed and verdict.reason == "presented name not allowed on this port"


def test_no_name_is_denied_with_the_inspections_reason():
    verdict = judge(None, refused="no server_name in ClientHello")
    assert not verdict.allowed and verdict.reason == "no server_name in ClientHello"


def test_a_source_that_is_no_longer_enforced_passes():
    verdict = judge("other.example", src="10.244.1.11")
    assert verdict.allowed and verdict.reason == "source is not an enforced pod"
    assert judge("other.example", src="10.244.9.9").pod is None


def test_the_names_the_pod_resolved_to_the_destination_are_given():
    table = AllowTable(TTLPolicy())
    table.resolutions.record("default/c", "good.example", {"198.51.100.7": 100.0})
    table.resolutions.record("default/c", "a.cdn.example", {"198.51.100.7": 100.0, "198.51.100.8": 100.0})
    verdict = judge("evil.example", table=table)
    assert not verdict.allowed and verdict.resolved == ("a.cdn.example", "good.example")
