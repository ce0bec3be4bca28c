"""bench.deps compares like with like: both sides agree before any timing, and a run reports every case."""

import pytest

from bench import deps


def test_the_typical_answer_reads_the_same_addresses_both_ways():
    query, answer = deps.typical_answer()
    deps.check_agreement(query, answer)  # raises SystemExit on any disagreement
    assert deps.dnslib_addresses(deps.DNSRecord.parse(answer)) == ["192.0.2.10", "192.0.2.11"]


def test_the_agreement_check_can_fail(monkeypatch):
    query, answer = deps.typical_answer()
    monkeypatch.setattr(deps, "dnslib_addresses", lambda record: ["192.0.2.10"])
    with pytest.raises(SystemExit, match="disagree"):
        deps.check_agreement(query, answer)


def test_a_short_run_prints_a_ratio_for_every_case(capsys):
    deps.main(["--rounds", "1", "--calls", "5", "--datagrams", "3"])
    lines = capsys.readouterr().out.splitlines()
    ratios = [line for line in lines if " ratio " in line]
    assert len(ratios) == len(deps.wire_cases(*deps.typical_answer())) + 1
