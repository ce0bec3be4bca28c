"""The policy file: the article's shapes load, and every bad input is named precisely."""

import textwrap

import pytest

from fqdn_policy.policy.model import Protocol
from fqdn_policy.sources.fileloader import PolicyFileError, load_file, load_text

ARTICLE = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata:
  name: allow-out-fqdnnp
spec:
  podSelector:
    matchLabels:
      app: curl-client
  egress:
  - matches:
    - pattern: "*.yourdomain.com"
    - name: "www.google.com"
    ports:
    - protocol: "TCP"
      port: 443
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: curl-client}}
status: {podIP: 10.244.1.10, podIPs: [{ip: 10.244.1.10}, {ip: "2001:db8:244:0::10"}]}
"""


def test_article_policy_loads():
    ps = load_text(ARTICLE)
    (policy,) = ps.policies
    assert policy.key == "default/allow-out-fqdnnp"
    (rule,) = policy.egress
    assert [m.text for m in rule.matchers] == ["*.yourdomain.com", "www.google.com"]
    assert rule.ports[0].protocol is Protocol.TCP and rule.ports[0].port == 443
    assert rule.grants() == {("tcp", 443)}
    (pod,) = ps.pods
    assert pod.ips == ("10.244.1.10", "2001:db8:244::10")  # canonical, deduplicated


def test_shipped_example_loads():
    ps = load_file("config/policy.yaml")
    assert len(ps.policies) == 1 and len(ps.pods) == 2


def test_project_group_and_defaults():
    ps = load_text("""
apiVersion: fqdn.policy.dev/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: p, namespace: team}
spec:
  podSelector: {}
  egress:
  - matches: [{name: a.example.com}]
    ports: [{port: 53}, {protocol: UDP}]
""")
    (policy,) = ps.policies
    assert policy.namespace == "team"
    assert policy.egress[0].grants() == {("tcp", 53), ("udp", 53), ("sctp", 53), ("udp", None)}


def test_lists_are_flattened():
    ps = load_text("""
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: a}, status: {podIP: 10.244.1.1}}
- {apiVersion: v1, kind: Pod, metadata: {name: b}, status: {podIP: 10.244.1.2}}
""")
    assert [p.name for p in ps.pods] == ["a", "b"]


ERROR_ROWS = [
    # (yaml, expected fragment of the single error line)
    ("kind: Service\napiVersion: v1", "document 1 (Service): kind: 'Service' is not a known kind"),
    (
        "apiVersion: networking.gke.io/v1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}",
        ":1: document 1 (FQDNNetworkPolicy default/p): apiVersion: 'networking.gke.io/v1' is not one of",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec: {}",
        ":4: document 1 (FQDNNetworkPolicy default/p): spec.podSelector: is required",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec:\n"
        "  podSelector: {matchLabel: {app: x}}",
        ":5: document 1 (FQDNNetworkPolicy default/p): spec.podSelector.matchLabel: unknown field",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec:\n"
        "  podSelector: {}\n  egress:\n  - matches: []",
        ":7: document 1 (FQDNNetworkPolicy default/p): spec.egress[0].matches: needs at least 1 item",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec:\n"
        "  podSelector: {}\n  egress:\n  - matches: [{name: a.com, pattern: '*.a.com'}]",
        "spec.egress[0].matches[0]: needs exactly one of `name` or `pattern`, got name and pattern",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec:\n"
        "  podSelector: {}\n  egress:\n  - matches: [{name: a.com}]\n    ports: [{protocol: TCP, port: '443'}]",
        "spec.egress[0].ports[0].port: must be an integer, got a string '443'",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec:\n"
        "  podSelector: {}\n  egress:\n  - matches: [{name: a.com}]\n    ports: [{protocol: SCTP}]",
        "spec.egress[0].ports[0].protocol: 'SCTP' is not one of: TCP, UDP, ALL",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec:\n"
        "  podSelector:\n    matchExpressions: [{key: app, operator: In}]",
        "spec.podSelector.matchExpressions[0]: operator In needs a non-empty `values` list",
    ),
    (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: p}\nspec:\n"
        "  podSelector:\n    matchExpressions: [{key: app, operator: Exists, values: [a]}]",
        "operator Exists takes no `values`",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.1.300}",
        ":4: document 1 (Pod default/a): status.podIP: '10.244.1.300' is not an IPv4 or IPv6 address",
    ),
    ("a: [1, 2", "(yaml)"),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.1.1}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nstatus: {podIP: 10.244.1.1}",
        "Pod default/b: status.podIPs: 10.244.1.1 is also default/a's",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.1.1}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.1.2}",
        "Pod default/a: metadata.name: defined twice",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), ERROR_ROWS)
def test_errors_name_document_and_field(text, fragment):
    with pytest.raises(PolicyFileError) as caught:
        load_text(text, "p.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("p.yaml")
    assert fragment in lines[0], lines[0]


def test_all_problems_reported_at_once():
    text = textwrap.dedent("""
        apiVersion: networking.gke.io/v1alpha1
        kind: FQDNNetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          egress:
          - matches: [{name: "bad name"}]
            ports: [{port: 0}]
    """)
    with pytest.raises(PolicyFileError) as caught:
        load_text(text)
    fields = [p.field for p in caught.value.problems]
    assert fields == ["spec.egress[0].matches[0].name", "spec.egress[0].ports[0].port"]


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(PolicyFileError, match="No such file"):
        load_file(tmp_path / "nope.yaml")
