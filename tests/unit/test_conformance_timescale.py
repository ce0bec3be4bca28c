"""The conformance table on a slower clock: every time in a row scaled by one factor, nothing else."""

import yaml

from tests.conformance import timescale
from tests.conformance.conftest import CASES_FILE, load_cases


def by_id(table: dict) -> dict[str, dict]:
    return {case["id"]: case for case in table["cases"]}


def test_factor_one_is_the_table_as_written():
    assert load_cases(1.0) == yaml.safe_load(CASES_FILE.read_text())
    assert timescale.base_flags(1.0) == ("--min-ttl", "1")


def test_a_refresh_row_keeps_its_relation_on_a_six_times_slower_clock():
    row = by_id(load_cases(6.0))["ttl-refresh"]
    assert row["zone"]["refresh.example.com"]["ttl"] == 18
    assert [s["sleep"] for s in row["steps"] if "sleep" in s] == [12, 12]
    assert row["zone"]["refresh.example.com"]["A"] == ["198.51.100.130"]


def test_holds_zone_steps_and_min_ttl_scale_and_addresses_and_expectations_do_not():
    rows = by_id(load_cases(6.0))
    expiry = rows["ttl-expiry"]
    assert expiry["zone"]["short.example.com"]["ttl"] == 12
    hold = next(s for s in expiry["steps"] if "hold" in s)
    assert hold == {"hold": "198.51.100.129:7", "seconds": 21.0, "expect": "held"}
    cut = next(s for s in rows["ttl-shorter-never-cuts"]["steps"] if "zone" in s)
    assert cut["zone"]["cut.example.com"]["ttl"] == 6
    assert rows["ttl-zero"]["zone"]["zero.example.com"]["ttl"] == 0
    assert timescale.base_flags(6.0) == ("--min-ttl", "6")
    assert rows["name-exact"] == by_id(load_cases(1.0))["name-exact"]


def test_a_fractional_factor_rounds_ttls_up_never_down():
    assert timescale.ttl(3, 1.5) == 5
    assert timescale.ttl(2, 1.01) == 3
