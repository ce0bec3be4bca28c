"""What happens to a denied packet: the on-deny annotation, the reject sets, the deny chains, the flags."""

import pytest

from fqdn_policy.cli.main import build_parser
from fqdn_policy.enforcer import ruleset
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.spec.documents import policy_from_document
from fqdn_policy.policy.spec.schema import POD_DOCUMENT_SCHEMA
from fqdn_policy.policy.spec.schemacheck import validate
from fqdn_policy.sources.fileloader import PolicyFileError, load_text

POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata:
  name: {name}
  annotations: {annotations}
spec:
  podSelector: {{matchLabels: {{app: {app}}}}}
  egress: [{{matches: [{{name: www.google.com}}]}}]
"""
PODS = """
---
{apiVersion: v1, kind: Pod, metadata: {name: a, labels: {app: a}}, status: {podIPs: [{ip: 10.244.1.10}, {ip: "2001:db8:244::10"}]}}
---
{apiVersion: v1, kind: Pod, metadata: {name: b, labels: {app: b}}, status: {podIPs: [{ip: 10.244.1.11}]}}
"""


def policy(name="p", app="a", annotations="{}"):
    return POLICY.format(name=name, app=app, annotations=annotations)


def test_reject_annotation_puts_the_selected_pods_in_the_reject_sets():
    text = policy("r", "a", '{"fqdn.policy.dev/on-deny": reject, other.example/x: "1"}')
    text += "---" + policy("d", "b", '{"fqdn.policy.dev/on-deny": drop}') + PODS
    index = PolicyIndex(load_text(text))
    assert index.reject_ips(4) == {"10.244.1.10"}
    assert index.reject_ips(6) == {"2001:db8:244::10"}
    assert index.enforced_ips(4) == {"10.244.1.10", "10.244.1.11"}


def test_any_rejecting_policy_makes_its_pods_reject():
    text = policy("r", "a", '{"fqdn.policy.dev/on-deny": reject}') + "---" + policy("d", "a") + PODS
    assert PolicyIndex(load_text(text)).reject_ips(4) == {"10.244.1.10"}


def test_no_annotation_means_drop():
    assert PolicyIndex(load_text(policy() + PODS)).reject_ips(4) == frozenset()


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        ('{"fqdn.policy.dev/on-deny": Reject}', "'Reject' is not one of: drop, reject"),
        ('{"fqdn.policy.dev/on-deny": true}', "metadata.annotations.fqdn.policy.dev/on-deny"),
        ("{other.example/x: 3}", "metadata.annotations.other.example/x"),
        ("[reject]", "metadata.annotations"),
    ],
)
def test_bad_annotations_are_refused_with_the_field(annotations, fragment):
    with pytest.raises(PolicyFileError) as caught:
        load_text(policy(annotations=annotations), "p.yaml")
    assert fragment in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("p.yaml:")


def test_document_loader_shared_with_the_kubernetes_source_reads_it():
    doc = {
        "apiVersion": "fqdn.policy.dev/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "metadata": {"name": "p", "annotations": {"fqdn.policy.dev/on-deny": "reject"}},
        "spec": {"podSelector": {}},
    }
    assert policy_from_document(doc).rejects


def test_pods_may_carry_any_annotation():
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "a", "annotations": {"x": "1"}},
        "status": {},
    }
    assert validate(pod, POD_DOCUMENT_SCHEMA) == []


def _rules(commands, chain):
    return [
        c["add"]["rule"]["expr"]
        for c in commands
        if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain
    ]


def test_enforce_chain_logs_within_the_rate_then_rejects_or_drops():
    commands = ruleset.base_ruleset("t", ruleset.Denial(ruleset.Mode.ENFORCE, 7, 5))
    tail = _rules(commands, "egress_v4")[-3:]
    limit, log, goto = tail
    assert limit[0] == {"limit": {"rate": 5, "burst": 10, "per": "second", "inv": True}}
    assert limit[1:] == [{"counter": "drops_unlogged"}, {"goto": {"target": "deny_v4"}}]
    assert log == [{"log": {"group": 7, "prefix": "fqdn-policy enforce", "snaplen": 96}}]
    assert goto == [{"goto": {"target": "deny_v4"}}]
    deny = _rules(commands, "deny_v6")
    assert deny[0][-1] == {"reject": {"type": "tcp reset"}}
    assert deny[1][-1] == {"reject": {"type": "icmpv6", "expr": "admin-prohibited"}}
    assert deny[2] == [{"counter": None}, {"drop": None}]


def test_audit_chain_logs_new_connections_and_accepts():
    commands = ruleset.base_ruleset("t", ruleset.Denial(ruleset.Mode.AUDIT))
    limit, log, _ = _rules(commands, "egress_v6")[-3:]
    new = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}
    assert limit[0] == new and log[0] == new
    assert log[1]["log"]["prefix"] == "fqdn-policy audit"
    assert _rules(commands, "deny_v6") == [[{"counter": None}, {"accept": None}]]


def test_no_log_group_means_no_log_rules():
    commands = ruleset.base_ruleset("t", ruleset.Denial(nflog_group=None))
    assert _rules(commands, "egress_v4")[-1] == [{"goto": {"target": "deny_v4"}}]
    assert not any("log" in expr for rule in _rules(commands, "egress_v4") for expr in rule)


def test_pod_set_commands():
    assert ruleset.reject_commands("t", ["10.0.0.1", "2001:db8::1"], ["10.0.0.2"]) == [
        {"delete": {"element": {"family": "inet", "table": "t", "name": "reject_v4", "elem": ["10.0.0.2"]}}},
        {"add": {"element": {"family": "inet", "table": "t", "name": "reject_v4", "elem": ["10.0.0.1"]}}},
        {"add": {"element": {"family": "inet", "table": "t", "name": "reject_v6", "elem": ["2001:db8::1"]}}},
    ]


def test_flags():
    parse = build_parser().parse_args
    base = ["run", "--policy", "p.yaml", "--upstream", "192.0.2.53"]
    args = parse(base)
    assert (args.mode, args.reject, args.nflog_group, args.drop_log_rate) == ("enforce", False, 4053, 20)
    args = parse([*base, "--mode", "audit", "--reject", "--nflog-group", "off", "--drop-log-rate", "3"])
    assert (args.mode, args.reject, args.nflog_group, args.drop_log_rate) == ("audit", True, None, 3)


@pytest.mark.parametrize(
    "bad", [["--mode", "warn"], ["--nflog-group", "65536"], ["--nflog-group", "x"], ["--drop-log-rate", "0"]]
)
def test_bad_flags_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", "--policy", "p.yaml", "--upstream", "192.0.2.53", *bad])
    assert exit_.value.code == 2


def test_neighbour_discovery_is_never_denied():
    """Link-local by definition; with bridge netfilter, pods' solicitations pass the forward hook."""
    commands = ruleset.base_ruleset("t")
    nd = [rule for rule in _rules(commands, "egress_v6") if "icmpv6" in str(rule)]
    assert len(nd) == 1 and nd[0][-1] == {"accept": None}
    assert "nd-neighbor-solicit" in str(nd[0]) and not any(
        "icmpv6" in str(r) for r in _rules(commands, "egress_v4")
    )
