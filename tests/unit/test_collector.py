"""The agent's collector regime (fqdn_policy.agent.collector): with the real collector, in this process."""

import gc
import weakref

import pytest

from fqdn_policy.agent.collector import MIN_GROWTH_BLOCKS, MIN_INTERVAL, CollectorRegime, whole_collection_due


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None
        self.payload = [object() for _ in range(1_000)]  # a block each, freed with the cycle


def cycle() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def regime():
    scheduled = []
    now = [1000.0]
    regime = CollectorRegime(20_000, scheduled.append, clock=lambda: now[0])
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    regime.install()
    try:
        yield regime, scheduled, now
    finally:
        regime.uninstall()
    assert gc.get_threshold() == thresholds and gc.isenabled() == enabled
    assert gc.get_freeze_count() == 0


def test_the_frozen_heap_is_collected_whole_after_growing_a_quarter_and_a_minute():
    assert not whole_collection_due(2_000_000, 2_000_000, 2000.0, 1000.0)
    assert not whole_collection_due(2_000_000 + 499_999, 2_000_000, 2000.0, 1000.0)  # < a quarter
    assert whole_collection_due(2_500_000, 2_000_000, 2000.0, 1000.0)
    assert not whole_collection_due(2_500_000, 2_000_000, 1000.0 + MIN_INTERVAL - 1, 1000.0)  # too soon
    # a small heap waits for MIN_GROWTH_BLOCKS, not a quarter of itself
    assert not whole_collection_due(1_000 + MIN_GROWTH_BLOCKS - 1, 1_000, 2000.0, 1000.0)
    assert whole_collection_due(1_000 + MIN_GROWTH_BLOCKS, 1_000, 2000.0, 1000.0)


def test_survivors_of_a_young_collection_are_frozen_and_a_whole_collection_frees_their_cycles(regime):
    regime, _, _ = regime
    kept = [Node() for _ in range(100)]
    gc.collect(0)  # the young collection's survivors, `kept` among them, are frozen right after it
    assert gc.is_tracked(kept[0]) and gc.get_freeze_count() > 0
    ref = cycle()
    held = ref()
    gc.collect(0)  # the cycle survives this one (it is still referenced) and is frozen with the rest
    del held
    gc.collect(0)
    gc.collect(1)  # unreferenced now, but frozen: no generation sees it
    assert ref() is not None
    result = regime.collect_whole()
    assert ref() is None and result.collected >= 2
    assert result.blocks_after <= result.blocks_before - 2_000 and regime.whole_collections == 1
    del kept


def test_a_whole_collection_is_scheduled_once_the_frozen_heap_has_grown_and_not_twice(regime):
    regime, scheduled, now = regime
    grown = [[i] for i in range(MIN_GROWTH_BLOCKS)]  # a list and an int: two blocks each
    gc.collect(0)
    assert scheduled == []  # grown enough, but within a minute of the install's collection
    now[0] += MIN_INTERVAL
    more = [[i] for i in range(1_000)]
    gc.collect(0)
    assert scheduled == [regime.collect_whole]  # not run inside the collector's callback
    gc.collect(0)
    assert len(scheduled) == 1  # already pending
    scheduled.pop()()
    now[0] += MIN_INTERVAL
    gc.collect(0)
    assert scheduled == []  # measured from the whole collection's survivors now
    del grown, more
