"""The short fuzz run of the default suite: seeded mutations through the query and answer paths
(tests/fuzz/harness.py). The million-input run is `python -m bench.fuzz` (docs/failure-modes.md)."""

import tracemalloc

from fqdn_policy.policy.state.elements import ElementWrite
from tests.fuzz.harness import FuzzFinding, FuzzTarget, mutation_run


def test_twelve_thousand_mutations_no_finding_and_no_growth():
    target = mutation_run(4_000, seed=1)  # warm-up: caches, rate-limit entries, allow elements
    tracemalloc.start()
    try:
        mutation_run(2_000, seed=2, target=target)
        warm = tracemalloc.take_snapshot()
        mutation_run(6_000, seed=3, target=target)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(warm, "filename"))
    finally:
        tracemalloc.stop()
    assert target.inputs == 12_000
    assert target.writer.writes > 100  # the mutations do reach kernel writes, not just parse errors
    assert grown < 256 * 1024, f"{grown} bytes more after 6,000 inputs"


def test_a_write_of_an_address_not_in_the_answer_is_a_finding():
    """The oracle can fail: a gate that wrote something else would be caught."""
    target = FuzzTarget()
    target.writer.answer = b"\xc0\x00\x02\x02"  # 192.0.2.2, not .1
    try:
        target.writer.submit_elements(
            "fuzz",
            [ElementWrite(("10.244.1.10", "192.0.2.1", None, None), 60, 1060.0, "www.example.com")],
            [],
            lambda error: None,
        )
    except FuzzFinding:
        return
    raise AssertionError("no finding")
