"""bench.ab's --tree: a checkout of either layout is accepted, anything else refused."""

from pathlib import Path

from bench.ab import is_checkout

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_of_this_layout_or_the_one_before_the_namespace_is_a_tree(tmp_path):
    assert is_checkout(ROOT)  # was refused: the check looked for agent/cli.py only
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "cli.py").write_text("")
    assert is_checkout(tmp_path)
    assert not is_checkout(tmp_path / "agent")


def test_the_variants_take_turns_running_first():
    from bench.ab import round_order

    variants = {"base": [], "new": ["--x"], "third": []}
    orders = [[name for name, _ in round_order(variants, r)] for r in range(3)]
    assert orders == [["base", "new", "third"], ["new", "third", "base"], ["third", "base", "new"]]
    assert round_order(variants, 1)[2] == ("base", [])  # the arguments travel with their variant
