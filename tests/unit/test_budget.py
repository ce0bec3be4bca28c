"""Entry budgets (fqdn_policy.policy.state.budget) in the name manager, with time passed in: who is evicted, which
elements go with them, and what never goes."""

import pytest

from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.budget import AGENT, POD, EntryBudget
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: flood}
spec:
  podSelector: {}
  egress:
  - matches: [{pattern: "*.flood.example"}, {pattern: "*.quiet.example"}]
    ports: [{protocol: TCP, port: 443}]
---
{apiVersion: v1, kind: Pod, metadata: {name: a}, status: {podIPs: [{ip: 10.244.1.10}]}}
---
{apiVersion: v1, kind: Pod, metadata: {name: b}, status: {podIPs: [{ip: 10.244.1.11}]}}
"""
INDEX = PolicyIndex(load_text(POLICY))
A, B = "default/a", "default/b"
IP = {A: "10.244.1.10", B: "10.244.1.11"}


def table(per_pod=1000, total=1000):
    return AllowTable(TTLPolicy(5, 86400, refresh_slack=0.0), budget=EntryBudget(per_pod, total))


def ask(t, pod, qname, addresses, now, ttl=300):
    """One allowed answer, as the gate does it: plan, evict at once, commit (the write acknowledged)."""
    client = INDEX.pod(pod)
    pairs = [(4, a, ttl) for a in addresses]
    plan = t.plan(pod, client.ips_by_version, qname, client.rules.match(qname).grants, pairs, now, INDEX.pod)
    t.evict(plan)
    t.commit(plan)
    return plan


def element(pod, dst):
    return (IP[pod], dst, "tcp", 443)


def held(t, pod):
    return sorted((q, d) for q, d, _ in t.resolutions.entries(pod))


def test_within_the_budgets_nothing_is_evicted():
    t = table(per_pod=3)
    for i in range(3):
        plan = ask(t, A, f"n{i}.flood.example", [f"198.51.100.{i}"], now=float(i))
        assert plan.evictions == [] and plan.evict_deletes == []
    assert t.resolutions.entries_of(A) == 3 and len(t) == 3


def test_beyond_the_pods_budget_its_soonest_ending_entry_goes_with_its_element():
    t = table(per_pod=3)
    ask(t, A, "long.flood.example", ["198.51.100.1"], now=0.0, ttl=3000)
    ask(t, A, "short.flood.example", ["198.51.100.2"], now=1.0, ttl=100)  # ends first, though newer
    ask(t, A, "mid.flood.example", ["198.51.100.3"], now=2.0, ttl=1000)
    plan = ask(t, A, "new.flood.example", ["198.51.100.4"], now=3.0)
    assert [(e.pod, e.qname, e.dst, e.budget) for e in plan.evictions] == [
        (A, "short.flood.example", "198.51.100.2", POD)
    ]
    assert plan.evict_deletes == [element(A, "198.51.100.2")]
    assert element(A, "198.51.100.2") not in t.expiry and element(A, "198.51.100.4") in t.expiry
    assert t.resolutions.entries_of(A) == 3 and t.resolutions.total == 3
    assert plan.resolved.keys() == {"198.51.100.4"}  # the answer itself is allowed


def test_a_flood_keeps_the_pod_at_its_budget_and_every_answer_allowed():
    t = table(per_pod=50, total=10_000)
    for i in range(2000):
        plan = ask(t, A, f"n{i}.flood.example", [f"198.51.{i // 250}.{i % 250}"], float(i))
        assert plan.writes and plan.over_budget == []
        assert t.resolutions.entries_of(A) <= 50
    assert t.resolutions.entries_of(A) == 50 and len(t) == 50
    assert held(t, A) == sorted(
        (f"n{i}.flood.example", f"198.51.{i // 250}.{i % 250}") for i in range(1950, 2000)
    )


def test_an_evicted_address_another_name_of_the_pod_holds_keeps_its_element():
    t = table(per_pod=2)
    ask(t, A, "one.flood.example", ["198.51.100.1"], now=0.0, ttl=100)
    ask(t, A, "two.flood.example", ["198.51.100.1"], now=1.0, ttl=1000)
    plan = ask(t, A, "three.flood.example", ["198.51.100.3"], now=2.0)
    assert [e.qname for e in plan.evictions] == ["one.flood.example"]
    assert plan.evict_deletes == []  # two.flood.example still resolves to it
    assert element(A, "198.51.100.1") in t.expiry


def test_the_answers_own_address_is_never_deleted_for_it():
    t = table(per_pod=1)
    ask(t, A, "one.flood.example", ["198.51.100.1"], now=0.0)
    plan = ask(t, A, "two.flood.example", ["198.51.100.1"], now=1.0)  # same address, another name
    assert [e.qname for e in plan.evictions] == ["one.flood.example"]
    assert plan.evict_deletes == [] and element(A, "198.51.100.1") in t.expiry
    assert held(t, A) == [("two.flood.example", "198.51.100.1")]


def test_an_answer_larger_than_the_budget_keeps_what_fits():
    t = table(per_pod=2)
    plan = ask(t, A, "many.flood.example", ["198.51.100.1", "198.51.100.2", "198.51.100.3"], now=0.0)
    assert len(plan.over_budget) == 1 and len(plan.resolved) == 2 and len(plan.writes) == 2
    assert plan.over_budget[0] not in plan.resolved
    assert t.resolutions.entries_of(A) == 2


def test_the_agents_budget_takes_from_the_pod_holding_most_not_a_quiet_one():
    t = table(per_pod=100, total=6)
    ask(t, B, "only.quiet.example", ["203.0.113.1"], now=0.0, ttl=60)  # B's one entry ends first of all
    for i in range(5):
        ask(t, A, f"n{i}.flood.example", [f"198.51.100.{i}"], now=1.0 + i)
    plan = ask(t, A, "n5.flood.example", ["198.51.100.5"], now=10.0)
    assert [(e.pod, e.qname, e.budget) for e in plan.evictions] == [(A, "n0.flood.example", AGENT)]
    assert held(t, B) == [("only.quiet.example", "203.0.113.1")]
    assert t.resolutions.total == 6
    # The quiet pod asking now takes from the flooding pod too: it is the largest.
    plan = ask(t, B, "two.quiet.example", ["203.0.113.2"], now=11.0)
    assert [(e.pod, e.budget) for e in plan.evictions] == [(A, AGENT)]
    assert plan.evict_deletes == [element(A, "198.51.100.1")]
    assert t.resolutions.entries_of(B) == 2 and t.resolutions.total == 6


def test_among_equally_large_pods_the_asking_one_gives():
    t = table(per_pod=100, total=5)
    for i in range(3):
        ask(t, A, f"n{i}.flood.example", [f"198.51.100.{i}"], now=float(i))
    for i in range(2):
        ask(t, B, f"n{i}.flood.example", [f"198.51.100.{i}"], now=10.0 + i)
    plan = ask(t, B, "n2.flood.example", ["198.51.100.2"], now=20.0)  # B would hold 3, as A does
    assert [e.pod for e in plan.evictions] == [B]
    assert t.resolutions.entries_of(A) == 3


def test_an_address_whose_names_are_all_evicted_goes():
    t = table(per_pod=2)
    ask(t, A, "one.flood.example", ["198.51.100.1"], now=0.0)
    ask(t, A, "two.flood.example", ["198.51.100.1"], now=1.0)
    plan = ask(t, A, "new.flood.example", ["198.51.100.2", "198.51.100.3"], now=2.0)
    assert sorted(e.qname for e in plan.evictions) == ["one.flood.example", "two.flood.example"]
    assert plan.evict_deletes == [element(A, "198.51.100.1")]
    assert element(A, "198.51.100.1") not in t.expiry


def test_an_element_the_kernel_may_have_expired_is_forgotten_not_deleted():
    t = table(per_pod=1)
    ask(t, A, "one.flood.example", ["198.51.100.1"], now=0.0, ttl=10)  # element written for 10 s
    plan = ask(t, A, "two.flood.example", ["198.51.100.2"], now=9.5)  # within the 1 s margin
    assert [e.qname for e in plan.evictions] == ["one.flood.example"]
    assert plan.evict_deletes == []  # deleting what the kernel no longer holds would fail the request


def test_an_address_whose_write_is_out_is_not_deleted():
    t = table(per_pod=2)
    client = INDEX.pod(A)
    grants = client.rules.match("x.flood.example").grants
    ask(t, A, "old.flood.example", ["198.51.100.1"], now=0.0)
    ask(t, A, "other.flood.example", ["198.51.100.2"], now=0.5)
    # An answer for another name with the same address, its write still out.
    pending = t.plan(A, client.ips_by_version, "x.flood.example", grants, [(4, "198.51.100.1", 300)], 1.0)
    t.hold(pending)
    plan = ask(t, A, "new.flood.example", ["198.51.100.3"], now=2.0)
    assert "old.flood.example" in [e.qname for e in plan.evictions]
    assert element(A, "198.51.100.1") not in plan.evict_deletes
    t.release(pending)
    assert t._in_flight == {}


def test_planning_alone_evicts_nothing():
    t = table(per_pod=1)
    ask(t, A, "one.flood.example", ["198.51.100.1"], now=0.0)
    client = INDEX.pod(A)
    grants = client.rules.match("two.flood.example").grants
    plan = t.plan(A, client.ips_by_version, "two.flood.example", grants, [(4, "198.51.100.2", 300)], 1.0)
    assert plan.evictions and held(t, A) == [("one.flood.example", "198.51.100.1")]
    assert element(A, "198.51.100.1") in t.expiry and t.generation(A) == 0
    t.evict(plan)
    assert held(t, A) == [] and t.generation(A) == 1 and t.generation(B) == 0


def test_an_expiry_frees_room_without_evictions():
    t = table(per_pod=2)
    ask(t, A, "one.flood.example", ["198.51.100.1"], now=0.0, ttl=60)
    ask(t, A, "two.flood.example", ["198.51.100.2"], now=0.0, ttl=600)
    t.forget_expired(100.0)
    plan = ask(t, A, "three.flood.example", ["198.51.100.3"], now=100.0)
    assert plan.evictions == [] and t.resolutions.entries_of(A) == 2


@pytest.mark.parametrize(("per_pod", "total"), [(0, 10), (10, 0), (-1, 10)])
def test_a_budget_below_one_is_refused(per_pod, total):
    with pytest.raises(ValueError, match="at least 1"):
        EntryBudget(per_pod, total)


def decide_and_hold(t, pod, qname, address, now):
    """An answer decided and evicted for, its write out (not yet committed)."""
    client = INDEX.pod(pod)
    grants = client.rules.match(qname).grants
    plan = t.plan(pod, client.ips_by_version, qname, grants, [(4, address, 300)], now, INDEX.pod)
    t.evict(plan)
    t.hold(plan)
    return plan


def test_answers_whose_write_is_out_count_against_the_budget():
    t = table(per_pod=2)
    ask(t, A, "a.flood.example", ["198.51.100.1"], now=0.0)
    ask(t, A, "b.flood.example", ["198.51.100.2"], now=1.0)
    first = decide_and_hold(t, A, "c.flood.example", "198.51.100.3", now=2.0)  # evicts a
    second = decide_and_hold(t, A, "d.flood.example", "198.51.100.4", now=3.0)
    assert [e.qname for e in second.evictions] == ["b.flood.example"]  # c, still out, counted
    t.commit(first)
    t.commit(second)
    assert t.resolutions.entries_of(A) == 2 and held(t, A) == [
        ("c.flood.example", "198.51.100.3"),
        ("d.flood.example", "198.51.100.4"),
    ]


@pytest.mark.parametrize(("per_pod", "total"), [(1, 1000), (1000, 1)])
def test_a_failed_write_no_longer_counts(per_pod, total):
    t = table(per_pod, total)
    failed = decide_and_hold(t, A, "a.flood.example", "198.51.100.1", now=0.0)
    t.release(failed)  # the write failed: the pod got SERVFAIL, nothing was added
    plan = decide_and_hold(t, A, "b.flood.example", "198.51.100.2", now=1.0)
    assert plan.evictions == [] and plan.over_budget == []
