"""fqdn_policy.ops takes what it serves: metrics providers and routes built from bare objects, no Agent."""

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from fqdn_policy.enforcer.ruleset import Mode
from fqdn_policy.ops.agentmetrics import DropMetrics, PolicyMetrics, SniMetrics
from fqdn_policy.ops.health import Health
from fqdn_policy.ops.metrics import registry_for
from fqdn_policy.ops.opsapi import routes
from fqdn_policy.policy.decide.snijudge import SniStats
from fqdn_policy.policy.diagnose.dropstats import DropStats
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text
from tests.unit.test_gate import POLICY

OPS = Path(__file__).resolve().parents[2] / "fqdn_policy" / "ops"


def samples(registry):
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


def test_ops_never_imports_the_agent():
    imports = re.compile(r"^\s*(?:from|import) fqdn_policy\.agent\b", re.M)
    importers = [p.name for p in OPS.glob("*.py") if imports.search(p.read_text())]
    assert importers == []


def test_providers_read_what_they_were_given_and_none_before_it_exists():
    stats: list[DropStats] = []
    registry = registry_for([DropMetrics(Mode.AUDIT, lambda: stats[0] if stats else None)])
    assert samples(registry) == {("fqdn_policy_denied_unlogged_packets_total", ()): 0}
    stats.append(DropStats())
    stats[0].count("default/c")
    stats[0].count("default/c")
    stats[0].unlogged = 5
    assert samples(registry) == {
        ("fqdn_policy_denied_connections_total", (("mode", "audit"), ("pod", "default/c"))): 2,
        ("fqdn_policy_denied_unlogged_packets_total", ()): 5,
    }


def test_sni_metrics_count_verified_connections_by_pod_and_verdict():
    stats: list[SniStats] = []
    registry = registry_for([SniMetrics(lambda: stats[0] if stats else None)])
    assert samples(registry) == {
        ("fqdn_policy_sni_unreadable_packets_total", ()): 0,
        ("fqdn_policy_sni_queue_overflows_total", ()): 0,
        ("fqdn_policy_sni_held_connections", ()): 0,
    }
    stats.append(SniStats())
    stats[0].count("default/c", "allowed")
    stats[0].count("default/c", "denied")
    stats[0].count("default/c", "denied")
    stats[0].held, stats[0].queue_overflows = 3, 1
    assert samples(registry) == {
        ("fqdn_policy_sni_connections_total", (("pod", "default/c"), ("verdict", "allowed"))): 1,
        ("fqdn_policy_sni_connections_total", (("pod", "default/c"), ("verdict", "denied"))): 2,
        ("fqdn_policy_sni_unreadable_packets_total", ()): 0,
        ("fqdn_policy_sni_queue_overflows_total", ()): 1,
        ("fqdn_policy_sni_held_connections", ()): 3,
    }


class Constant:
    def collect(self):
        family = GaugeMetricFamily("fqdn_policy_constant", "a provider of one family")
        family.add_metric([], 1)
        yield family


def test_the_registry_exposes_every_provider_in_order():
    index = PolicyIndex(load_text(POLICY))
    text = generate_latest(registry_for([Constant(), PolicyMetrics(lambda: index)])).decode()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == ["fqdn_policy_constant", "fqdn_policy_pods", "fqdn_policy_policies"]


def test_routes_serve_what_they_were_given():
    index: list[PolicyIndex] = []
    served = routes(
        health=Health(),
        index=lambda: index[0] if index else None,
        table=AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0)),
        registry=registry_for([Constant()]),
        nft_table="t",
        reject=True,
    )
    assert served["/explain"]({"pod": "default/c", "host": "www.google.com"}).status == 503
    body = json.loads(served["/state"]({}).body)
    assert (body["table"], body["pods"], body["ready"]) == ("inet t", [], False)
    assert b"fqdn_policy_constant 1.0" in served["/metrics"]({}).body
    index.append(PolicyIndex(load_text(POLICY)))
    verdict = json.loads(served["/explain"]({"pod": "default/c", "host": "www.cloudflare.com"}).body)
    assert verdict["verdict"] == "name-not-allowed"
    assert [p["pod"] for p in json.loads(served["/state"]({}).body)["pods"]] == ["default/c", "default/o"]
