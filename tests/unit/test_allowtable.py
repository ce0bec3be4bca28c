"""TTL arithmetic and the name manager, with time passed in: nothing here sleeps."""

import pytest

from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.expirywheel import DEFAULT_SLOT_SECONDS
from fqdn_policy.policy.state.reconcile import reconcile
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

POD = "default/p"
IPS = {4: ("10.244.1.10",), 6: ("2001:db8:244::10",)}
TCP443 = (("tcp", 443),)


@pytest.mark.parametrize(
    ("ttl", "timeout"), [(0, 5), (1, 5), (5, 5), (300, 300), (86400, 3600), (2**31 - 1, 3600)]
)
def test_timeout_is_clamped(ttl, timeout):
    assert TTLPolicy(5, 3600, refresh_slack=0.0).timeout(ttl) == timeout


def test_ttl_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="at least 1"):
        TTLPolicy(0, 10, refresh_slack=0.0)
    with pytest.raises(ValueError, match="below min"):
        TTLPolicy(10, 5, refresh_slack=0.0)


def plan_commit(table, addresses, now, qname="a.example.com", grants=TCP443):
    plan = table.plan(POD, IPS, qname, grants, addresses, now)
    table.commit(plan)
    return plan


def test_first_answer_writes_each_address_and_family():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    plan = plan_commit(table, [(4, "198.51.100.10", 300), (6, "2001:db8:100::10", 300)], now=100.0)
    assert [(w.element, w.timeout) for w in plan.writes] == [
        (("10.244.1.10", "198.51.100.10", "tcp", 443), 300),
        (("2001:db8:244::10", "2001:db8:100::10", "tcp", 443), 300),
    ]
    assert plan.writes[0].name == "a.example.com"


def test_covered_answer_writes_nothing():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    plan_commit(table, [(4, "198.51.100.10", 300)], now=100.0)
    # an upstream cache counts the TTL down: the same answer 10 s later is covered
    assert plan_commit(table, [(4, "198.51.100.10", 290)], now=110.0).writes == []


def test_covered_until_is_the_last_moment_the_same_answer_needs_no_write():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.1))
    answer = [(4, "198.51.100.10", 300), (6, "2001:db8:100::10", 100)]
    plan_commit(table, answer, now=100.0)  # written for 330 s and 110 s
    covered = table.plan(POD, IPS, "a.example.com", TCP443, answer, 101.0)
    assert covered.writes == []
    assert covered.covered_until == 110.0  # the AAAA's element: 210 - its 100 s timeout
    assert table.plan(POD, IPS, "a.example.com", TCP443, answer, 110.0).writes == []
    late = table.plan(POD, IPS, "a.example.com", TCP443, answer, 110.001)
    assert [w.element[1] for w in late.writes] == ["2001:db8:100::10"]


def test_covered_after_write_is_when_the_written_answer_would_need_a_write_again():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.1))
    answer = [(4, "198.51.100.10", 300), (6, "2001:db8:100::10", 100)]
    first = table.plan(POD, IPS, "a.example.com", TCP443, answer, 100.0)
    assert len(first.writes) == 2
    assert first.covered_after_write == 110.0  # the AAAA's element: written for 110 s, answer 100 s
    table.commit(first)
    assert table.plan(POD, IPS, "a.example.com", TCP443, answer, 110.0).writes == []
    assert table.plan(POD, IPS, "a.example.com", TCP443, answer, 110.001).writes != []
    # One element held, one new: the earlier of the two bounds.
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.1))
    plan_commit(table, [(4, "198.51.100.10", 300)], now=100.0)  # held until 430
    mixed = table.plan(POD, IPS, "a.example.com", TCP443, answer, 125.0)
    assert [w.element[1] for w in mixed.writes] == ["2001:db8:100::10"]
    assert mixed.covered_until == 130.0 and mixed.covered_after_write == 130.0  # 430 - 300 < 125 + 10


def test_removals_count_what_can_take_an_element_before_its_expiry():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0), max_addresses_per_name=1)
    plan_commit(table, [(4, "198.51.100.1", 100)], now=0.0)
    assert table.removals == 0
    plan_commit(table, [(4, "198.51.100.2", 100)], now=1.0)  # the cap evicts .1
    assert table.removals == 1
    table.forget_expired(500.0)  # expiry is not a removal: nothing covered can have expired
    assert len(table) == 0 and table.removals == 1


def test_later_answer_refreshes_and_shorter_never_cuts():
    table = AllowTable(TTLPolicy(1, 3600, refresh_slack=0.0))
    plan_commit(table, [(4, "198.51.100.10", 10)], now=0.0)
    refresh = plan_commit(table, [(4, "198.51.100.10", 10)], now=5.0)
    assert [w.timeout for w in refresh.writes] == [10]
    assert table.expiry[("10.244.1.10", "198.51.100.10", "tcp", 443)] == 15.0
    shorter = plan_commit(table, [(4, "198.51.100.10", 2)], now=6.0)
    assert shorter.writes == []
    assert table.expiry[("10.244.1.10", "198.51.100.10", "tcp", 443)] == 15.0


def test_uncommitted_plan_changes_nothing():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    table.plan(POD, IPS, "a.example.com", TCP443, [(4, "198.51.100.10", 300)], 0.0)
    assert len(table) == 0 and len(table.resolutions) == 0


def test_cap_keeps_newest_and_reports_eviction():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0), max_addresses_per_name=2)
    plan_commit(table, [(4, "198.51.100.1", 100)], now=0.0)
    plan_commit(table, [(4, "198.51.100.2", 100)], now=1.0)
    plan = plan_commit(table, [(4, "198.51.100.3", 100)], now=2.0)
    assert plan.evicted == ["198.51.100.1"]
    assert plan.deletes == [("10.244.1.10", "198.51.100.1", "tcp", 443)]
    assert set(table.resolutions.addresses(POD, "a.example.com")) == {"198.51.100.2", "198.51.100.3"}
    assert ("10.244.1.10", "198.51.100.1", "tcp", 443) not in table.expiry


def test_forget_expired():
    """Bookkeeping goes once its expiry slot is over (at most one slot late; a late entry changes no
    decision, since every decision compares expiries with now)."""
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    plan_commit(table, [(4, "198.51.100.1", 10)], now=0.0)
    assert table.forget_expired(now=9.0) == (0, [], False)
    assert table.forget_expired(now=10.0 + DEFAULT_SLOT_SECONDS) == (
        1,
        [(POD, "a.example.com", "198.51.100.1", 10.0)],
        False,
    )
    assert len(table.resolutions) == 0 and len(table) == 0


def test_an_extended_allowance_outlives_its_first_slot():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    plan_commit(table, [(4, "198.51.100.1", 10)], now=0.0)
    plan_commit(table, [(4, "198.51.100.1", 100)], now=5.0)  # extended to 105
    assert table.forget_expired(now=50.0) == (0, [], False)
    assert len(table) == 1 and table.resolutions.until(POD, "a.example.com", "198.51.100.1") == 105.0
    assert table.forget_expired(now=105.0 + DEFAULT_SLOT_SECONDS).elements == 1


def test_sweeps_agree_with_a_full_scan_whatever_happens_between_them():
    """Random answers, re-answers, evictions and sweeps: a sweep never takes anything live, and leaves
    nothing that expired a slot ago, for elements and resolutions alike."""
    import random

    rng = random.Random(5)
    table = AllowTable(TTLPolicy(1, 3600, refresh_slack=0.0), max_addresses_per_name=3)
    now = 0.0
    for _ in range(600):
        now += rng.uniform(0, 8)
        if rng.random() < 0.2:
            live_elements = {e: u for e, u in table.expiry.items() if u > now}
            live_resolutions = {r for r in table.resolutions.items() if r[3] > now}
            limit = rng.choice([None, 1, 3])  # limited sweeps are called again while there is more
            while table.forget_expired(now, limit).more:
                pass
            assert {e: u for e, u in table.expiry.items() if e in live_elements} == live_elements
            assert live_resolutions <= set(table.resolutions.items())
            assert all(u > now - DEFAULT_SLOT_SECONDS for u in table.expiry.values())
            assert all(r[3] > now - DEFAULT_SLOT_SECONDS for r in table.resolutions.items())
            continue
        name = f"n{rng.randrange(6)}.example.com"
        addresses = [(4, f"198.51.100.{rng.randrange(1, 9)}", rng.choice([1, 5, 30, 90]))]
        plan_commit(table, addresses, now=now, qname=name)
    table.forget_expired(now + 4000)
    assert len(table) == 0 and len(table.resolutions) == 0


POLICY = """
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: p}
spec:
  podSelector: {matchLabels: {app: c}}
  egress:
  - matches: [{name: a.example.com}]
    %s
---
{apiVersion: v1, kind: Pod, metadata: {name: p, labels: {app: c}}, status: {podIPs: [{ip: 10.244.1.10}]}}
"""


def test_reconcile_rewrites_grants_without_a_new_lookup():
    with_ports = PolicyIndex(load_text(POLICY % "ports: [{protocol: TCP, port: 443}]"))
    without_ports = PolicyIndex(load_text(POLICY % ""))
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    plan_commit(table, [(4, "198.51.100.10", 300)], now=0.0)
    rec = reconcile(table, without_ports, now=100.0)
    assert [(w.element, w.timeout) for w in rec.writes] == [
        (("10.244.1.10", "198.51.100.10", None, None), 200)
    ]
    assert rec.deletes == [("10.244.1.10", "198.51.100.10", "tcp", 443)]
    table.apply_reconciliation(rec)
    # unchanged policy: nothing to do
    assert reconcile(table, without_ports, now=101.0).writes == []
    assert reconcile(table, without_ports, now=101.0).deletes == []
    # back again
    rec = reconcile(table, with_ports, now=102.0)
    assert [w.element for w in rec.writes] == [("10.244.1.10", "198.51.100.10", "tcp", 443)]


def test_reconcile_drops_everything_of_a_deselected_pod():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    plan_commit(table, [(4, "198.51.100.10", 300)], now=0.0)
    empty = PolicyIndex(
        load_text("{apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: 10.244.1.10}}")
    )
    rec = reconcile(table, empty, now=1.0)
    assert rec.writes == [] and rec.deletes == [("10.244.1.10", "198.51.100.10", "tcp", 443)]
    assert len(table.resolutions) == 0


def test_evicted_address_stays_while_another_name_holds_it():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0), max_addresses_per_name=1)
    plan_commit(table, [(4, "198.51.100.1", 100)], now=0.0, qname="a.example.com")
    plan_commit(table, [(4, "198.51.100.1", 100)], now=0.0, qname="b.example.com")
    plan = plan_commit(table, [(4, "198.51.100.2", 100)], now=1.0, qname="a.example.com")
    assert plan.evicted == ["198.51.100.1"]
    assert plan.deletes == []  # b.example.com still resolves to it
    assert ("10.244.1.10", "198.51.100.1", "tcp", 443) in table.expiry


def test_reconcile_skips_pods_whose_rules_did_not_change():
    text = POLICY % "ports: [{protocol: TCP, port: 443}]"
    before, after = PolicyIndex(load_text(text)), PolicyIndex(load_text(text))
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    plan_commit(table, [(4, "198.51.100.10", 300)], now=0.0)
    rec = reconcile(table, after, now=1.0, previous=before)
    assert rec.writes == [] and rec.deletes == []
    # the same pod under a changed policy is reconciled
    changed = PolicyIndex(load_text(POLICY % ""))
    rec = reconcile(table, changed, now=1.0, previous=after)
    assert [w.element for w in rec.writes] == [("10.244.1.10", "198.51.100.10", None, None)]


def family_counts(table):
    return {v: sum(1 for e in table.expiry if (":" in e[1]) == (v == 6)) for v in (4, 6)}


def test_counts_by_family_follow_every_change():
    """The O(1) counts behind the set-elements gauge equal a recount after every kind of change."""
    with_ports = PolicyIndex(load_text(POLICY % "ports: [{protocol: TCP, port: 443}]"))
    without_ports = PolicyIndex(load_text(POLICY % ""))
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0), max_addresses_per_name=2)
    steps = [
        lambda: plan_commit(table, [(4, "198.51.100.1", 100), (6, "2001:db8:100::1", 100)], now=0.0),
        lambda: plan_commit(table, [(4, "198.51.100.1", 300)], now=1.0),  # refresh: same key
        lambda: plan_commit(table, [(4, "198.51.100.2", 100), (4, "198.51.100.3", 100)], now=2.0),  # evicts
        lambda: table.apply_reconciliation(reconcile(table, without_ports, now=3.0)),
        lambda: table.apply_reconciliation(reconcile(table, with_ports, now=4.0)),
        lambda: table.adopt(("10.244.1.10", "2001:db8:100::9", None, None), 50.0, "x.example.com", POD),
        lambda: table.adopt(("10.244.1.10", "2001:db8:100::9", None, None), 60.0, "x.example.com", POD),
        lambda: table.forget_expired(now=150.0),
        lambda: table.forget_expired(now=10_000.0),
    ]
    seen = []
    for step in steps:
        step()
        assert table.counts == family_counts(table)
        seen.append(dict(table.counts))
    assert any(c[6] for c in seen) and any(c[4] for c in seen)  # both families exercised
    assert table.counts == {4: 0, 6: 0}


def test_refresh_slack_writes_longer_so_repeats_need_no_write():
    table = AllowTable(TTLPolicy(1, 3600, refresh_slack=0.1))
    element = ("10.244.1.10", "198.51.100.10", "tcp", 443)
    first = plan_commit(table, [(4, "198.51.100.10", 600)], now=0.0)
    assert [(w.timeout, w.expiry) for w in first.writes] == [(660, 660.0)]
    # the same 600 s answer 59 s later is covered (expiry 660 >= 659): no kernel write
    assert plan_commit(table, [(4, "198.51.100.10", 600)], now=59.0).writes == []
    # past the slack it is written again, so an element never ends before its latest answer allows
    later = plan_commit(table, [(4, "198.51.100.10", 600)], now=61.0)
    assert [w.timeout for w in later.writes] == [660] and table.expiry[element] == 721.0


def test_refresh_slack_is_capped_and_validated():
    assert TTLPolicy(1, 86400, refresh_slack=0.1).written_timeout(86400) == 86400 + 60
    assert TTLPolicy(1, 86400, refresh_slack=0.1).written_timeout(3) == 3  # under 10 s: exact
    assert TTLPolicy(1, 86400, refresh_slack=0.0).written_timeout(600) == 600
    with pytest.raises(ValueError, match="fraction"):
        TTLPolicy(1, 10, refresh_slack=1.5)


def test_evicted_address_goes_once_the_last_name_lets_go():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0), max_addresses_per_name=1)
    plan_commit(table, [(4, "198.51.100.1", 100)], now=0.0, qname="a.example.com")
    plan_commit(table, [(4, "198.51.100.1", 100)], now=0.0, qname="b.example.com")
    plan_commit(table, [(4, "198.51.100.2", 100)], now=1.0, qname="a.example.com")  # a lets go
    plan = plan_commit(table, [(4, "198.51.100.3", 100)], now=2.0, qname="b.example.com")  # b too
    assert plan.evicted == ["198.51.100.1"]
    assert plan.deletes == [("10.244.1.10", "198.51.100.1", "tcp", 443)]
    assert ("10.244.1.10", "198.51.100.1", "tcp", 443) not in table.expiry


def test_a_mass_expiry_is_forgotten_in_slices():
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    for i in range(10):
        plan_commit(table, [(4, f"198.51.100.{i + 1}", 10)], now=0.0, qname=f"n{i}.example.com")
    later = 10.0 + DEFAULT_SLOT_SECONDS
    first = table.forget_expired(later, limit=4)
    assert (first.elements, len(first.resolutions), first.more) == (4, 4, True)
    slices = [first]
    while slices[-1].more:
        slices.append(table.forget_expired(later, limit=4))
    assert [s.elements for s in slices] == [4, 4, 2]
    assert sum(len(s.resolutions) for s in slices) == 10
    assert len(table) == 0 and len(table.resolutions) == 0
