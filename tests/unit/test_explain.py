"""fqdn_policy.policy.diagnose.explain: the verdict for (pod, name, port) over a PolicyIndex, one row per reason."""

import pytest

from fqdn_policy.policy.diagnose.explain import Verdict, explain, grant_covers
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.sources.fileloader import load_text

POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - matches: [{name: www.google.com}, {pattern: "*.yourdomain.com"}]
    ports: [{protocol: TCP, port: 443}]
  - matches: [{pattern: "**.example.org"}]
  - matches: [{name: dns.example.net}]
    ports: [{protocol: UDP}]
  - matches: [{name: any-proto.example.net}]
    ports: [{port: 8443}]
---
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: extra, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - matches: [{name: www.google.com}]
    ports: [{protocol: TCP, port: 80}]
---
{apiVersion: v1, kind: Pod, metadata: {name: web, labels: {app: web}}, status: {podIPs: [{ip: 10.244.1.10}]}}
---
{apiVersion: v1, kind: Pod, metadata: {name: free}, status: {podIPs: [{ip: 10.244.1.11}]}}
"""

WEB = "default/web"
GOOGLE_443 = "default/web#egress[0] (www.google.com)"
GOOGLE_80 = "default/extra#egress[0] (www.google.com)"


@pytest.fixture(scope="module")
def index():
    return PolicyIndex(load_text(POLICY))


@pytest.mark.parametrize(
    ("pod", "host", "protocol", "port", "verdict", "allowed_by"),
    [
        # allowed, and by which rule; names compare case-insensitively, trailing dot optional
        (WEB, "www.google.com", "tcp", 443, Verdict.ALLOWED, [GOOGLE_443]),
        (WEB, "WWW.Google.COM.", "tcp", 443, Verdict.ALLOWED, [GOOGLE_443]),
        (WEB, "www.google.com", None, 443, Verdict.ALLOWED, [GOOGLE_443]),  # a port alone means TCP
        (WEB, "www.google.com", "tcp", 80, Verdict.ALLOWED, [GOOGLE_80]),  # a second policy adds up
        (WEB, "www.google.com", None, None, Verdict.ALLOWED, [GOOGLE_443, GOOGLE_80]),  # the name alone
        (
            WEB,
            "api.yourdomain.com",
            "tcp",
            443,
            Verdict.ALLOWED,
            ["default/web#egress[0] (*.yourdomain.com)"],
        ),
        (WEB, "a.b.example.org", "udp", 53, Verdict.ALLOWED, ["default/web#egress[1] (**.example.org)"]),
        (WEB, "dns.example.net", "udp", 5353, Verdict.ALLOWED, ["default/web#egress[2] (dns.example.net)"]),
        (WEB, "dns.example.net", "udp", None, Verdict.ALLOWED, ["default/web#egress[2] (dns.example.net)"]),
        (
            WEB,
            "any-proto.example.net",
            "sctp",
            8443,
            Verdict.ALLOWED,
            ["default/web#egress[3] (any-proto.example.net)"],
        ),
        # the pod is not enforced, or not known
        ("default/free", "www.cloudflare.com", "tcp", 443, Verdict.NOT_ENFORCED, []),
        ("default/ghost", "www.google.com", "tcp", 443, Verdict.UNKNOWN_POD, []),
        ("other/web", "www.google.com", "tcp", 443, Verdict.UNKNOWN_POD, []),
        # selected, but no rule matches the name
        (WEB, "www.cloudflare.com", "tcp", 443, Verdict.NAME_NOT_ALLOWED, []),
        (WEB, "yourdomain.com", "tcp", 443, Verdict.NAME_NOT_ALLOWED, []),  # * is never empty
        (WEB, "a.b.yourdomain.com", "tcp", 443, Verdict.NAME_NOT_ALLOWED, []),  # * is one label
        (WEB, "example.org", "tcp", 443, Verdict.NAME_NOT_ALLOWED, []),  # ** is one or more labels
        # the name matches, the port or protocol does not
        (WEB, "www.google.com", "tcp", 8080, Verdict.PORT_NOT_ALLOWED, []),
        (WEB, "www.google.com", "udp", 443, Verdict.PORT_NOT_ALLOWED, []),
        (WEB, "dns.example.net", "tcp", 53, Verdict.PORT_NOT_ALLOWED, []),
        (WEB, "any-proto.example.net", "tcp", 443, Verdict.PORT_NOT_ALLOWED, []),
        # not a name any rule can match
        (WEB, "bad name.com", "tcp", 443, Verdict.UNMATCHABLE_NAME, []),
        (WEB, "a..com", None, None, Verdict.UNMATCHABLE_NAME, []),
    ],
)
def test_verdicts(index, pod, host, protocol, port, verdict, allowed_by):
    result = explain(index, pod, host, protocol, port)
    assert result.verdict is verdict, result.reason
    assert [str(r) for r in result.allowed_by] == allowed_by
    assert result.allowed is (verdict in (Verdict.ALLOWED, Verdict.NOT_ENFORCED))


def test_port_refusal_names_the_matching_rules_and_what_they_open(index):
    result = explain(index, WEB, "www.google.com", "tcp", 8080)
    assert [str(m.rule) for m in result.matches] == [GOOGLE_443, GOOGLE_80]
    assert "open only tcp/443, tcp/80, not tcp/8080" in result.reason
    doc = result.to_json()
    assert doc["matches"] == [
        {"rule": GOOGLE_443, "grants": ["tcp/443"]},
        {"rule": GOOGLE_80, "grants": ["tcp/80"]},
    ]
    assert doc["verdict"] == "port-not-allowed" and doc["allowed"] is False


def test_name_refusal_names_the_selecting_policies(index):
    result = explain(index, WEB, "www.cloudflare.com")
    assert result.policies == ("default/web", "default/extra")
    assert "selected by default/web, default/extra" in result.reason
    assert result.pod_ips == ("10.244.1.10",)


def test_explain_agrees_with_the_hot_path_matcher(index):
    """The verdict's rules are the ones the DNS path grants for the same name."""
    client = index.pod(WEB)
    for name in ["www.google.com", "api.yourdomain.com", "x.y.example.org", "www.cloudflare.com"]:
        expected = {str(r) for r in client.rules.match(name).rules}
        assert {str(m.rule) for m in explain(index, WEB, name).matches} == expected


@pytest.mark.parametrize(
    ("grant", "protocol", "port", "covers"),
    [
        ((None, None), "udp", 9, True),
        (("tcp", None), "tcp", 9, True),
        (("tcp", None), "udp", 9, False),
        (("tcp", 443), "tcp", 443, True),
        (("tcp", 443), "tcp", 80, False),
        (("tcp", 443), "tcp", None, True),  # some TCP port is open
        (("tcp", 443), None, None, True),
    ],
)
def test_grant_covers(grant, protocol, port, covers):
    assert grant_covers(grant, protocol, port) is covers


def test_network_policy_ip_blocks_are_shown_beside_the_name_verdict():
    text = (
        POLICY
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 203.0.113.0/24}}]
    ports: [{protocol: TCP, port: 5432}]
  - to: [{ipBlock: {cidr: 192.0.2.0/24}}]
"""
    )
    index = PolicyIndex(load_text(text))
    result = explain(index, WEB, "db.example.com", "tcp", 5432)
    assert result.verdict is Verdict.NAME_NOT_ALLOWED  # the name verdict is unchanged
    assert result.ip_blocks == ("192.0.2.0/24", "203.0.113.0/24 tcp/5432")
    assert result.to_json()["ip_blocks"] == ["192.0.2.0/24", "203.0.113.0/24 tcp/5432"]
    assert explain(index, "default/free", "db.example.com").ip_blocks == ()  # not enforced: none written


def test_how_a_denial_fails_drop_by_default_reject_by_annotation_or_flag(index):
    assert explain(index, WEB, "www.cloudflare.com").on_deny == "drop"
    assert explain(index, WEB, "www.cloudflare.com", reject_all=True).on_deny == "reject"
    assert explain(index, WEB, "www.google.com", "tcp", 443, reject_all=True).on_deny is None  # allowed
    assert explain(index, "default/free", "www.cloudflare.com", reject_all=True).on_deny is None
    annotated = POLICY.replace(
        "metadata: {name: extra, namespace: default}",
        "metadata: {name: extra, namespace: default, annotations: {fqdn.policy.dev/on-deny: reject}}",
    )
    rejecting = PolicyIndex(load_text(annotated))
    denied = explain(rejecting, WEB, "www.google.com", "udp", 53)
    assert denied.verdict is Verdict.PORT_NOT_ALLOWED
    assert denied.on_deny == "reject" and denied.to_json()["on_deny"] == "reject"
