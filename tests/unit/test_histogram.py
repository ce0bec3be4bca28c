import pytest

from fqdn_policy.ops.histogram import Histogram


def test_observations_land_in_the_bucket_whose_upper_bound_holds_them():
    h = Histogram((0.001, 0.01))
    for value in (0.0005, 0.001, 0.002, 0.5):
        h.observe(value)
    snap = h.snapshot()
    assert snap.counts == (2, 1, 1)
    assert snap.cumulative() == [(0.001, 2), (0.01, 3), (float("inf"), 4)]
    assert snap.total == pytest.approx(0.5035)
    assert snap.count == 4


def test_quantile_is_the_upper_bound_of_the_bucket_that_reaches_the_rank():
    h = Histogram((0.001, 0.01, 0.1))
    for _ in range(98):
        h.observe(0.0001)
    h.observe(0.005)
    h.observe(0.05)
    snap = h.snapshot()
    assert snap.quantile(0.5) == 0.001
    assert snap.quantile(0.99) == 0.01
    assert snap.quantile(1.0) == 0.1


def test_empty_histogram_quantile_is_zero_and_bad_bounds_are_refused():
    assert Histogram().snapshot().quantile(0.99) == 0.0
    with pytest.raises(ValueError):
        Histogram((0.01, 0.001))
    with pytest.raises(ValueError):
        Histogram(())


def test_snapshot_is_a_copy():
    h = Histogram((1.0,))
    snap = h.snapshot()
    h.observe(0.5)
    assert snap.count == 0 and h.snapshot().count == 1


def test_default_bounds_tell_a_hold_just_over_the_target_from_one_twice_the_target():
    # The hold target is p99 <= 0.2 ms: a p99 of 0.25 ms must read as such, not as "<= 0.5 ms".
    near, far = Histogram(), Histogram()
    for _ in range(100):
        near.observe(0.00025)
        far.observe(0.00045)
    assert near.snapshot().quantile(0.99) == pytest.approx(0.0003)
    assert far.snapshot().quantile(0.99) == pytest.approx(0.0005)
    target = Histogram()
    target.observe(0.0002)
    assert target.snapshot().quantile(0.99) == pytest.approx(0.0002)
