"""The guard table's commands and the --guard-mark flag (the behaviour is in tests/e2e/test_guard.py)."""

import pytest

from fqdn_policy.cli.main import build_parser
from fqdn_policy.enforcer import guard, ruleset


@pytest.mark.parametrize("mark", [0, 0x1, 0x2, 0x80000000])
def test_single_bits_and_zero_are_valid(mark):
    assert guard.validate_mark(mark) == mark


@pytest.mark.parametrize("mark", [0x3, 0x4002, -1, 1 << 32])
def test_anything_else_is_refused(mark):
    with pytest.raises(ValueError, match="not a single bit"):
        guard.validate_mark(mark)


def test_flag_accepts_hex_and_refuses_two_bits(capsys):
    parser = build_parser()
    args = parser.parse_args(["run", "--policy", "p", "--upstream", "192.0.2.53", "--guard-mark", "0x10"])
    assert args.guard_mark == 0x10
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["run", "--policy", "p", "--upstream", "192.0.2.53", "--guard-mark", "0x6"])
    assert exit_info.value.code == 2 and "not a single bit" in capsys.readouterr().err


def _rules(commands, table, chain):
    return [c["add"]["rule"]["expr"] for c in commands if "rule" in c.get("add", {})
            and c["add"]["rule"]["table"] == table and c["add"]["rule"]["chain"] == chain]  # fmt: skip


def test_main_table_marks_only_what_it_sends_to_an_egress_chain():
    marked = ruleset.base_ruleset("t", mark=0x2)
    jumps = [r for r in _rules(marked, "t", "forward") if "jump" in r[-1]]
    assert len(jumps) == 2 and all(r[-2] == ruleset.set_mark_bit(0x2) for r in jumps)
    unmarked = ruleset.base_ruleset("t")
    assert not any("mangle" in e for r in _rules(unmarked, "t", "forward") for e in r)


def test_guard_runs_after_the_main_chain_accepts_marked_and_established_then_drops():
    commands = guard.guard_ruleset("t_guard", 0x2)
    chain = next(c["add"]["chain"] for c in commands if "chain" in c.get("add", {}))
    assert chain["hook"] == "forward" and chain["prio"] == ruleset.FORWARD_PRIORITY + 1
    rules = _rules(commands, "t_guard", "forward")
    assert rules[0][-1] == {"accept": None} and rules[0][0]["match"]["right"] == 0x2
    assert rules[0][1]["mangle"]["value"] == {"&": [{"meta": {"key": "mark"}}, 0xFFFFFFFD]}  # bit cleared
    assert rules[1][0]["match"]["right"] == ["established", "related"]
    assert [r[-1] for r in rules[2:]] == [{"drop": None}, {"drop": None}]
    assert all(r[1]["match"]["op"] == "!=" for r in rules[2:])  # exempt destinations pass
