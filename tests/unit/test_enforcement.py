"""The enforcement core on its own: events in, effects out; no writer, no clock, no log stream."""

import io

import pytest

from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.policy.decide.decision import Outcome
from fqdn_policy.policy.decide.enforcement import RELEASED, Enforcement
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.budget import EntryBudget
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text
from tests.unit.test_decisioncache import POLICY_80, answer
from tests.unit.test_gate import POLICY, query

POD_IP, OTHER_IP = "10.244.1.10", "10.244.1.11"
ELEMENT = (POD_IP, "198.51.100.10", "tcp", 443)


def core(policy=POLICY, budget=None):
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.1), budget=budget)
    return Enforcement(PolicyIndex(load_text(policy)), table, AddressGuard(), DecisionLog(io.StringIO()))


def test_an_allowed_answer_is_held_for_its_write_then_released_with_its_line():
    c = core()
    effects = c.on_answer(POD_IP, "udp", query(), answer(), 100.0)
    assert effects.release is None and effects.line is None
    assert [(w.element, w.timeout) for w in effects.write.writes] == [(ELEMENT, 330)]
    assert c.stats.held == 1 and ELEMENT not in c.table.expiry  # not before the kernel said so
    done = c.on_write_done(effects.write, None, 100.2)
    assert done.release is True and done.write is None
    assert done.line.decision.outcome is Outcome.ALLOWED and done.line.error is None
    assert c.table.expiry[ELEMENT] == 430.0 and c.stats.held == 0 and c.stats.elements_written == 1


def test_a_refused_write_releases_servfail_and_keeps_nothing():
    c = core()
    effects = c.on_answer(POD_IP, "udp", query(), answer(), 100.0)
    done = c.on_write_done(effects.write, RuntimeError("netlink: no space"), 100.1)
    assert done.release is False and done.line.error == "netlink: no space"
    assert ELEMENT not in c.table.expiry and c.stats.write_failures == 1 and c.stats.held == 0
    again = c.on_answer(POD_IP, "udp", query(), answer(), 100.2)
    assert again.write is not None  # not remembered: decided and written again


def test_a_remembered_repeat_is_the_shared_released_effects_and_renews_the_resolution():
    c = core()
    first = c.on_answer(POD_IP, "udp", query(), answer(), 100.0)
    c.on_write_done(first.write, None, 100.0)
    assert c.on_answer(POD_IP, "udp", query(), answer(), 101.0) is RELEASED
    assert c.stats.remembered == 1 and c.stats.by_outcome()["allowed"] == 2
    assert c.table.resolutions.until("default/c", "www.google.com", "198.51.100.10") == 401.0


@pytest.mark.parametrize("change", ["policy", "guard"])
def test_a_policy_or_guard_event_moves_the_generation_and_voids_what_was_remembered(change):
    c = core()
    first = c.on_answer(POD_IP, "udp", query(), answer(), 100.0)
    c.on_write_done(first.write, None, 100.0)
    generation = c.generation
    if change == "policy":
        c.on_policy(PolicyIndex(load_text(POLICY_80)))
    else:
        c.on_guard(AddressGuard())
    assert c.generation == generation + 1 and len(c.covered) == 0
    effects = c.on_answer(POD_IP, "udp", query(), answer(), 101.0)
    assert effects is not RELEASED
    if change == "policy":  # the new rule's port 80 is to be written
        assert [w.element[3] for w in effects.write.writes] == [80]


def test_a_write_decided_under_an_old_policy_is_not_remembered():
    c = core()
    held = c.on_answer(POD_IP, "udp", query(), answer(), 100.0)
    c.on_policy(PolicyIndex(load_text(POLICY)))  # an equal policy, but a new index
    assert c.on_write_done(held.write, None, 100.1).release is True
    assert len(c.covered) == 0


def test_answers_that_allow_nothing_are_released_at_once():
    c = core()
    unselected = c.on_answer(OTHER_IP, "udp", query(), answer(), 100.0)
    denied = c.on_answer(POD_IP, "udp", query("other.example"), answer("203.0.113.7"), 100.0)
    unknown = c.on_answer("10.9.9.9", "udp", query(), answer(), 100.0)
    for effects, outcome in ((unselected, Outcome.NOT_SELECTED), (denied, Outcome.NOT_ALLOWED),
                             (unknown, Outcome.UNKNOWN_CLIENT)):  # fmt: skip
        assert effects.release is True and effects.write is None
        assert effects.line.decision.outcome is outcome
    assert c.names.names_for("default/c", "203.0.113.7", 100.0) == {"other.example": None}


def test_a_budget_eviction_comes_out_as_its_own_deletes_and_a_notice():
    c = core(budget=EntryBudget(1, 1000))
    first = c.on_answer(POD_IP, "udp", query(), answer("198.51.100.10"), 100.0)
    c.on_write_done(first.write, None, 100.0)
    c.on_policy(PolicyIndex(load_text(POLICY.replace("name: www.google.com", "pattern: '*.google.com'"))))
    second = c.on_answer(POD_IP, "udp", query("mail.google.com"), answer("198.51.100.20"), 101.0)
    assert second.evict_deletes == [(POD_IP, "198.51.100.10", "tcp", 443)]
    assert [n.event for n in second.notices] == ["dns.budget_exceeded"]
    assert second.notices[0].fields["evicted"] == {"pod": 1}
    assert c.on_evict_done(None, 101.1) is None
    refused = c.on_evict_done(RuntimeError("No such file or directory"), 101.2)
    assert refused.event == "dns.budget_delete_failed" and refused.fields["failures"] == 1
    assert c.on_evict_done(RuntimeError("again"), 101.3) is None  # one notice per interval
    assert c.stats.evict_delete_failures == 2
