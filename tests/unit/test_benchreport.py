"""bench.report: a run's histograms are the difference of two cumulative `agent.stats` readings."""

import pytest

from bench.report import hold_delta, pause_delta
from bench.services import cpu_us_per_query

BOUNDS = [0.001, 0.002, 0.005]


def reading(counts, total, by_generation=(0, 0, 0)):
    return {"bounds_s": BOUNDS, "counts": list(counts), "sum_s": total, "by_generation": list(by_generation)}


def test_hold_delta_counts_only_what_happened_between_the_readings():
    before = reading([5, 0, 0, 0], 0.004)
    after = reading([5, 98, 2, 0], 0.220)
    delta = hold_delta(before, after)
    assert delta["count"] == 100
    assert delta["p50_ms"] == 2.0
    assert delta["p99_ms"] == 5.0
    assert delta["mean_ms"] == pytest.approx(2.16)


def test_pause_delta_adds_the_total_the_largest_bucket_and_the_generations():
    before = reading([3, 1, 0, 0], 0.003, (4, 0, 0))
    after = reading([10, 1, 0, 1], 0.020, (11, 1, 0))
    delta = pause_delta(before, after)
    assert delta["count"] == 8
    assert delta["total_ms"] == pytest.approx(17.0)
    assert delta["max_ms"] == float("inf")  # one pause beyond the last bound
    assert delta["by_generation"] == [7, 1, 0]


def test_pause_delta_with_no_collection_has_no_largest():
    same = reading([3, 1, 0, 0], 0.003, (4, 0, 0))
    delta = pause_delta(same, same)
    assert delta["count"] == 0
    assert delta["max_ms"] is None


def test_cpu_per_query_is_the_difference_of_two_readings_over_the_answered_queries():
    user, system = cpu_us_per_query((1.0, 2.0), (1.5, 2.25), 10_000)
    assert user == pytest.approx(50.0) and system == pytest.approx(25.0)
    assert cpu_us_per_query((1.0, 2.0), (1.5, 2.25), 0) is None
