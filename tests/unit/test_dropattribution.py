"""Why a packet was denied: a table of cases over the pure attribution (fqdn_policy.policy.diagnose.dropattribution)."""

import pytest

from fqdn_policy.policy.decide.decision import AnsweredLookup, decide
from fqdn_policy.policy.diagnose.dropattribution import NameMemory, Reason, attribute
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: p}
spec:
  podSelector: {matchLabels: {app: c}}
  egress:
  - matches: [{name: www.google.com}, {pattern: "*.yourdomain.com"}]
    ports: [{protocol: TCP, port: 443}]
---
{apiVersion: v1, kind: Pod, metadata: {name: c, labels: {app: c}},
 status: {podIPs: [{ip: 10.244.1.10}, {ip: "2001:db8:244::10"}]}}
---
{apiVersion: v1, kind: Pod, metadata: {name: o}, status: {podIPs: [{ip: 10.244.1.11}]}}
"""
GOOGLE, CLOUDFLARE, HARDCODED = "198.51.100.10", "198.51.100.20", "198.51.100.99"


@pytest.fixture
def world():
    index = PolicyIndex(load_text(POLICY))
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    denied = NameMemory()
    guard = AddressGuard([], [])
    # At t=0 the pod looks up an allowed name (TTL 300) and one no rule allows.
    decision = decide(
        AnsweredLookup("10.244.1.10", "www.google.com", 1, 0, ((4, GOOGLE, 300),)), index, table, guard, 0.0
    )
    table.commit(decision.plan)
    denied.record_denied("default/c", "www.cloudflare.com", [CLOUDFLARE], 0.0)
    return index, table, denied


CASES = [
    # source, destination, protocol, port, now, reason, names
    ("10.244.1.10", CLOUDFLARE, "tcp", 443, 10.0, Reason.NAME_NOT_ALLOWED,
     [{"name": "www.cloudflare.com", "allowed": False}]),
    ("10.244.1.10", GOOGLE, "tcp", 80, 10.0, Reason.PORT_NOT_ALLOWED,
     [{"name": "www.google.com", "allowed": True, "expires_in_s": 290, "grants": ["tcp/443"]}]),
    ("10.244.1.10", GOOGLE, "udp", 443, 10.0, Reason.PORT_NOT_ALLOWED,
     [{"name": "www.google.com", "allowed": True, "expires_in_s": 290, "grants": ["tcp/443"]}]),
    ("10.244.1.10", GOOGLE, "tcp", 443, 400.0, Reason.EXPIRED,
     [{"name": "www.google.com", "allowed": True, "expired_s_ago": 100, "grants": ["tcp/443"]}]),
    ("10.244.1.10", GOOGLE, "tcp", 443, 10.0, Reason.NOT_IN_KERNEL,
     [{"name": "www.google.com", "allowed": True, "expires_in_s": 290, "grants": ["tcp/443"]}]),
    ("10.244.1.10", HARDCODED, "tcp", 443, 10.0, Reason.NEVER_RESOLVED, []),
    # Another pod resolved nothing: names are per pod.
    ("10.244.1.11", GOOGLE, "tcp", 80, 10.0, Reason.NEVER_RESOLVED, []),
    ("10.244.1.99", GOOGLE, "tcp", 80, 10.0, Reason.UNKNOWN_POD, []),
    # A denied answer is remembered for an hour, then forgotten.
    ("10.244.1.10", CLOUDFLARE, "tcp", 443, 3601.0, Reason.NEVER_RESOLVED, []),
]  # fmt: skip


@pytest.mark.parametrize(("source", "destination", "protocol", "port", "now", "reason", "names"), CASES)
def test_attribution(world, source, destination, protocol, port, now, reason, names):
    index, table, denied = world
    found = attribute(source, destination, protocol, port, index, table, denied, now)
    assert found.reason is reason
    assert found.fields()["names"] == names
    assert found.fields()["reason"] == reason.value


def test_never_resolved_says_so(world):
    found = attribute("10.244.1.10", HARDCODED, "tcp", 443, *world, 1.0)
    assert found.pod == "default/c"
    assert "never resolved through the proxy" in found.explanation


def test_a_name_no_longer_allowed_after_a_reload_counts_as_not_allowed(world):
    _, table, denied = world
    narrower = PolicyIndex(load_text(POLICY.replace("{name: www.google.com}, ", "")))
    found = attribute("10.244.1.10", GOOGLE, "tcp", 443, narrower, table, denied, 10.0)
    assert found.reason is Reason.NAME_NOT_ALLOWED
    assert found.fields()["names"] == [{"name": "www.google.com", "allowed": False}]


def test_both_memories_are_listed_once(world):
    index, table, denied = world
    denied.record_denied("default/c", "alias.example.net", [GOOGLE], 5.0)
    denied.record_denied("default/c", "www.google.com", [GOOGLE], 5.0)
    names = attribute("10.244.1.10", GOOGLE, "tcp", 80, index, table, denied, 10.0).fields()["names"]
    assert [n["name"] for n in names] == ["www.google.com", "alias.example.net"]


def test_name_memory_is_bounded_oldest_first():
    memory = NameMemory(limit=2)
    memory.record_denied("p", "a.example", ["192.0.2.1"], 0.0)
    memory.record_denied("p", "b.example", ["192.0.2.2"], 1.0)
    memory.record_denied("p", "a.example", ["192.0.2.1"], 2.0)  # refreshed: now the newest
    memory.record_expired([("p", "c.example", "192.0.2.3", 2.5)], 3.0)
    assert len(memory) == 2
    assert memory.names_for("p", "192.0.2.2", 3.0) == {}
    assert memory.names_for("p", "192.0.2.1", 3.0) == {"a.example": None}
    assert memory.names_for("p", "192.0.2.3", 3.0) == {"c.example": 2.5}


def test_an_allowance_forgotten_at_the_sweep_is_still_reported_expired(world):
    """The classic case: an application reuses an address long after its TTL."""
    index, table, memory = world
    now = 1000.0
    memory.record_expired(table.forget_expired(now).resolutions, now)
    assert table.names_for("default/c", GOOGLE) == {}
    found = attribute("10.244.1.10", GOOGLE, "tcp", 443, index, table, memory, now + 600)
    assert found.reason is Reason.EXPIRED
    assert found.fields()["names"] == [
        {"name": "www.google.com", "allowed": True, "expired_s_ago": 1300, "grants": ["tcp/443"]}
    ]
