"""ExpiryWheel: keys come due once their slot is over, once each, in any filing order."""

import pytest

from fqdn_policy.policy.state.expirywheel import ExpiryWheel


def test_a_key_comes_due_when_its_slot_is_over():
    wheel = ExpiryWheel(slot_seconds=10)
    wheel.file("a", 12.0)  # slot [10, 20)
    assert wheel.due(19.9) == []
    assert wheel.due(20.0) == ["a"]
    assert wheel.due(100.0) == [] and len(wheel) == 0


def test_slots_come_due_in_time_order_whatever_the_filing_order():
    wheel = ExpiryWheel(slot_seconds=1)
    for key, until in [("c", 30.5), ("a", 10.5), ("b", 20.5)]:
        wheel.file(key, until)
    assert wheel.due(25.0) == ["a", "b"]
    assert wheel.due(40.0) == ["c"]


def test_a_key_filed_twice_comes_due_once_per_sweep():
    wheel = ExpiryWheel(slot_seconds=10)
    wheel.file("a", 1.0)
    wheel.file("a", 15.0)
    wheel.file("b", 5.0)
    assert wheel.due(30.0) == ["a", "b"]


def test_a_key_filed_again_under_a_later_slot_comes_due_again():
    wheel = ExpiryWheel(slot_seconds=10)
    wheel.file("a", 5.0)
    assert wheel.due(10.0) == ["a"]
    wheel.file("a", 25.0)  # the owner found it extended
    assert wheel.due(29.0) == []
    assert wheel.due(30.0) == ["a"]


def test_the_slot_width_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        ExpiryWheel(slot_seconds=0)


def test_a_limited_call_leaves_the_rest_due_for_the_next():
    wheel = ExpiryWheel(slot_seconds=10)
    for key in "abcde":
        wheel.file(key, 1.0)
    wheel.file("f", 12.0)
    first = wheel.due(30.0, limit=2)
    assert len(first) == 2 and wheel.has_due(30.0)
    second = wheel.due(30.0, limit=3)
    third = wheel.due(30.0, limit=3)
    assert sorted(first + second + third) == list("abcdef")
    assert not wheel.has_due(30.0) and wheel.due(30.0, limit=3) == []
