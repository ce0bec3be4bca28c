"""deploy/monitoring/: the Service reaches the agents' public /metrics, the ServiceMonitor that
Service, and every alert and dashboard query uses only metrics the agent exports. (tests/cluster runs
promtool and a real Prometheus on the same files.)"""

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest

from fqdn_policy.agent.opswiring import metrics_providers
from fqdn_policy.cli.main import build_parser
from fqdn_policy.ops.metrics import registry_for
from tests.cluster.monitoring import (
    MONITORING,
    SCRAPE_SERIES,
    alert_rules,
    dashboard,
    dashboard_queries,
    exported_names,
    metric_names,
)
from tests.unit.test_deploy import KUBERNETES_VERSION, manifest
from tests.unit.test_metrics import agent  # noqa: F401 - the fixture

REQUIRED_ALERTS = {
    "not ready": "fqdn_policy_ready",
    "write failures": "fqdn_policy_errors_total",
    "SERVFAIL rate": "fqdn_policy_dns_responses_total",
    "hold p99": "fqdn_policy_answer_hold_seconds_bucket",
    "repairs": "fqdn_policy_repairs_total",
    "upstream unreachable": "fqdn_policy_upstream_latency_seconds_count",
    "drop-log overflow": "fqdn_policy_denied_unlogged_packets_total",
}
REQUIRED_PANELS = {
    "queries by verdict": "fqdn_policy_dns_queries_total",
    "hold time": "fqdn_policy_answer_hold_seconds_bucket",
    "elements": "fqdn_policy_set_elements",
    "drops by pod": "fqdn_policy_denied_connections_total",
    "repairs": "fqdn_policy_repairs_total",
}


def one(kind):
    (doc,) = [
        d
        for p in MONITORING.glob("*.yaml")
        for d in yaml.safe_load_all(p.read_text())
        if d.get("kind") == kind
    ]
    return doc


@pytest.fixture
def exported(agent):  # noqa: F811
    return exported_names(generate_latest(registry_for(metrics_providers(agent))).decode())


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (verdict) (rate(fqdn_policy_dns_queries_total{node=~".*"}[1m]))',
            {"fqdn_policy_dns_queries_total"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) > 0.005", {"a_bucket"}),
        ("a / on (instance) group_left b offset 5m unless c == bool 1", {"a", "b", "c"}),
        ('up{job="x"} == 0 and topk(20, d)', {"up", "d"}),
        ("increase(e[10m]) > 1e3", {"e"}),
    ],
)
def test_metric_names_of_an_expression(expr, names):
    assert metric_names(expr) == names


def test_kustomization_lists_every_file():
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in MONITORING.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["fqdn-policy.json=dashboard.json"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"


def test_service_reaches_the_public_metrics_listener_of_every_agent():
    service = one("Service")
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
    ds = manifest("DaemonSet")
    assert service["spec"]["selector"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] == ds["metadata"]["namespace"]
    agent_container = ds["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(
        [a.replace("$(POD_IP)", "192.0.2.1") for a in agent_container["args"] if not a.startswith("@")]
        + ["--upstream", "192.0.2.53"]
    )
    assert args.public_metrics == ("192.0.2.1", 9154)
    assert args.metrics[0] == "127.0.0.1"  # /state and /explain: loopback only
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == args.public_metrics[1] and service["spec"]["clusterIP"] == "None"
    env = {e["name"]: e for e in agent_container["env"]}
    assert env["POD_IP"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }  # the node's, with hostNetwork


def test_service_monitor_selects_the_service_and_its_port():
    service, monitor = one("Service"), one("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert any(f'up{{job="{job}"}}' in rule["expr"] for rule in alert_rules())


def test_alerts_are_complete_and_named_once():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert (
            rule["labels"]["severity"] in ("critical", "warning", "info") and rule["annotations"]["summary"]
        )
    used = set().union(*(metric_names(r["expr"]) for r in rules))
    for what, metric in REQUIRED_ALERTS.items():
        assert metric in used, f"no alert for {what}"


def test_every_alert_uses_only_exported_metrics(exported):
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported | SCRAPE_SERIES, (rule["alert"], names - exported)


def test_every_dashboard_query_uses_only_exported_metrics(exported):
    queries = dashboard_queries()
    for title, query in queries:
        names = metric_names(query)
        assert names and names <= exported, (title, names - exported)
    used = set().union(*(metric_names(q) for _, q in queries))
    for what, metric in REQUIRED_PANELS.items():
        assert metric in used, f"no panel for {what}"
    assert dashboard()["uid"] == "fqdn-policy"


def test_a_misspelt_metric_would_be_caught(exported):
    assert not metric_names("rate(fqdn_policy_dns_query_total[5m])") <= exported
    assert "fqdn_policy_denied_connections_total" in exported  # a family with no samples yet counts
    assert "fqdn_policy_answer_hold_seconds_bucket" in exported and "fqdn_policy_ready" in exported
