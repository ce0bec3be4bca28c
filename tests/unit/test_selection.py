"""Pod selection and the rule index: who is enforced, and what a name grants them."""

import pytest

from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.model import LabelSelector, Requirement
from fqdn_policy.sources.fileloader import load_text

SELECTOR_ROWS = [
    # (matchLabels, matchExpressions, pod labels, selected)
    ({}, [], {}, True),
    ({}, [], {"app": "x"}, True),
    ({"app": "x"}, [], {"app": "x", "tier": "web"}, True),
    ({"app": "x"}, [], {"app": "y"}, False),
    ({"app": "x"}, [], {}, False),
    ({"app": "x", "tier": "web"}, [], {"app": "x"}, False),
    ({}, [("app", "In", ["x", "y"])], {"app": "y"}, True),
    ({}, [("app", "In", ["x", "y"])], {"app": "z"}, False),
    ({}, [("app", "In", ["x"])], {}, False),
    ({}, [("app", "NotIn", ["x"])], {"app": "y"}, True),
    ({}, [("app", "NotIn", ["x"])], {}, True),
    ({}, [("app", "NotIn", ["x"])], {"app": "x"}, False),
    ({}, [("app", "Exists", [])], {"app": ""}, True),
    ({}, [("app", "Exists", [])], {}, False),
    ({}, [("app", "DoesNotExist", [])], {}, True),
    ({}, [("app", "DoesNotExist", [])], {"app": "x"}, False),
    ({"app": "x"}, [("tier", "In", ["web"])], {"app": "x", "tier": "db"}, False),  # AND
    ({"app": "x"}, [("tier", "In", ["web"])], {"app": "x", "tier": "web"}, True),
]


@pytest.mark.parametrize(("labels", "exprs", "pod_labels", "selected"), SELECTOR_ROWS)
def test_label_selector(labels, exprs, pod_labels, selected):
    selector = LabelSelector(
        tuple(sorted(labels.items())), tuple(Requirement(k, op, frozenset(v)) for k, op, v in exprs)
    )
    assert selector.matches(pod_labels) is selected


POLICIES = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - matches: [{name: api.example.com}]
    ports: [{protocol: TCP, port: 443}]
  - matches: [{pattern: "*.cdn.example.com"}]
---
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: all-shop, namespace: shop}
spec:
  podSelector: {}
  egress:
  - matches: [{name: api.example.com}]
    ports: [{protocol: TCP, port: 8443}, {protocol: UDP}]
---
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: elsewhere, namespace: other}
spec:
  podSelector: {}
  egress:
  - matches: [{pattern: "*"}]
---
{apiVersion: v1, kind: Pod, metadata: {name: web-1, namespace: shop, labels: {app: web}},
 status: {podIPs: [{ip: 10.244.1.10}, {ip: "2001:db8:244::10"}]}}
---
{apiVersion: v1, kind: Pod, metadata: {name: db-1, namespace: shop, labels: {app: db}}, status: {podIP: 10.244.1.11}}
---
{apiVersion: v1, kind: Pod, metadata: {name: web-2, namespace: free, labels: {app: web}}, status: {podIP: 10.244.1.12}}
"""


@pytest.fixture(scope="module")
def index():
    return PolicyIndex(load_text(POLICIES))


def test_policies_select_only_their_namespace(index):
    assert index.client("10.244.1.12").rules is None  # app=web, but in namespace free
    assert index.client("10.244.1.10").rules is not None
    assert index.client("10.244.1.99") is None
    assert index.enforced_ips(4) == {"10.244.1.10", "10.244.1.11"}
    assert index.enforced_ips(6) == {"2001:db8:244::10"}


def test_policies_and_rules_add_up(index):
    web = index.client("10.244.1.10").rules
    match = web.match("api.example.com")
    assert {str(r) for r in match.rules} == {
        "shop/web#egress[0] (api.example.com)",
        "shop/all-shop#egress[0] (api.example.com)",
    }
    assert match.grants == {("tcp", 443), ("tcp", 8443), ("udp", None)}
    assert web.match("img.cdn.example.com").grants == {(None, None)}
    assert web.match("a.b.cdn.example.com").rules == ()


def test_one_pod_never_gets_anothers_rules(index):
    db = index.client("10.244.1.11").rules
    assert db.match("api.example.com").grants == {("tcp", 8443), ("udp", None)}
    assert db.match("img.cdn.example.com").rules == ()


def test_broader_grants_absorb_narrower():
    ps = load_text("""
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: p}
spec:
  podSelector: {}
  egress:
  - matches: [{name: a.com}]
    ports: [{protocol: TCP, port: 443}, {protocol: TCP}]
  - matches: [{pattern: "*.com"}]
    ports: [{protocol: UDP, port: 53}]
---
{apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: 10.244.1.1}}
""")
    rules = PolicyIndex(ps).client("10.244.1.1").rules
    assert rules.match("a.com").grants == {("tcp", None), ("udp", 53)}


def test_policy_without_egress_denies_everything():
    ps = load_text("""
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: p}
spec: {podSelector: {}}
---
{apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: 10.244.1.1}}
""")
    index = PolicyIndex(ps)
    assert index.enforced_ips(4) == {"10.244.1.1"}
    assert index.client("10.244.1.1").rules.match("a.com").rules == ()


def test_names_matched_by_the_same_rules_share_one_answer(index):
    """Memory: the names under one pattern get one shared NameMatch, not one each."""
    web = index.client("10.244.1.10").rules
    first, second = web.match("img.cdn.example.com"), web.match("js.cdn.example.com")
    assert first is second
    assert web.match("api.example.com") is not first


def test_an_index_takes_over_unchanged_rule_sets_and_rebuilds_changed_ones(index):
    changed = load_text(POLICIES.replace("*.cdn.example.com", "*.img.example.com"))
    same = PolicyIndex(load_text(POLICIES), previous=index)
    rebuilt = PolicyIndex(changed, previous=index)
    for ip in ("10.244.1.10", "10.244.1.11"):
        assert same.client(ip).rules is index.client(ip).rules
    assert rebuilt.client("10.244.1.11").rules is index.client("10.244.1.11").rules  # web's edit: not db's
    web = rebuilt.client("10.244.1.10").rules
    assert web is not index.client("10.244.1.10").rules
    assert web.match("a.img.example.com").rules and not web.match("a.cdn.example.com").rules
    fresh = PolicyIndex(changed)
    for ip in ("10.244.1.10", "10.244.1.11", "10.244.1.12"):
        new, want = rebuilt.client(ip), fresh.client(ip)
        assert (new.rules.policies if new.rules else None) == (want.rules.policies if want.rules else None)
