"""fqdn_policy.ops.health: what makes /readyz say ready, with time passed in."""

from fqdn_policy.ops.health import UPSTREAM_WINDOW, Health


def started(now=100.0):
    health = Health(watchdog_interval=1.0)
    health.record_start(now)
    return health


def test_not_ready_until_started():
    health = Health()
    assert health.problems(0.0) == ["starting: policy, table and listeners not set up yet"]
    health.record_start(0.0)
    assert health.problems(0.5) == []


def test_missing_table_is_not_ready_until_repaired():
    health = started()
    health.record_table_check(False, 101.0)
    assert any("table or chain missing" in p for p in health.problems(101.0))
    health.record_repair(True, 101.5)
    assert health.problems(101.5) == []
    assert health.repairs == {"ok": 1, "failed": 0}


def test_failed_repair_stays_not_ready():
    health = started()
    health.record_table_check(False, 101.0)
    health.record_repair(False, 101.2)
    assert health.problems(101.2)
    assert health.repairs == {"ok": 0, "failed": 1}


def test_a_stuck_watchdog_makes_the_agent_unready():
    health = started(100.0)
    assert health.problems(103.9) == []
    assert health.problems(104.1) == ["the table watchdog has not completed a check in 4 s"]


def test_upstream_unreachable_only_while_attempts_time_out_and_none_is_answered():
    health = started()
    health.record_upstream(answered=0, timeouts=0, now=101.0)
    assert health.upstream_reachable(101.0)  # idle: no evidence either way
    health.record_upstream(answered=0, timeouts=3, now=102.0)
    health.record_table_check(True, 102.0)
    assert health.problems(102.0) == [
        f"no upstream answered in the last {UPSTREAM_WINDOW:g} s while attempts timed out"
    ]
    health.record_upstream(answered=1, timeouts=3, now=103.0)
    assert health.upstream_reachable(103.0)


def test_timeouts_age_out_of_the_window():
    health = started()
    health.record_upstream(answered=0, timeouts=2, now=101.0)
    assert not health.upstream_reachable(101.0 + UPSTREAM_WINDOW)
    assert health.upstream_reachable(101.1 + UPSTREAM_WINDOW)


def test_reloads_are_counted_by_result():
    health = started()
    for result in ("ok", "ok", "apply_failed"):
        health.record_reload(result)
    assert health.reloads == {"ok": 2, "apply_failed": 1}
    assert health.problems(100.0) == []  # a failed apply keeps the last good policy: still ready
