"""fqdn_policy.ops.collectorpauses: every collection of the cyclic collector is timed, by generation."""

import gc

import pytest

from fqdn_policy.ops.collectorpauses import CollectorPauses


@pytest.fixture
def pauses():
    ticks = iter(float(t) for t in range(0, 1_000_000, 2))  # each collection "takes" 2 s on this clock
    pauses = CollectorPauses(clock=lambda: next(ticks) / 1000)  # ... 2 ms
    pauses.install()
    yield pauses
    pauses.uninstall()


def test_each_collection_is_one_observation_of_its_pause(pauses):
    gc.collect(0)
    gc.collect(2)
    assert pauses.by_generation == [1, 0, 1]
    snap = pauses.histogram.snapshot()
    assert snap.count == 2
    assert snap.total == pytest.approx(0.004)
    assert pauses.longest == pytest.approx(0.002)
    assert snap.quantile(0.99) == 0.002  # the 2 ms bucket


def test_automatic_collections_are_seen_too(pauses):
    threshold = gc.get_threshold()
    gc.set_threshold(50, 10, 10)
    try:
        cycles = []
        for _ in range(1_000):
            node: list[object] = []
            node.append(node)  # a container the collector tracks
            cycles.append(node)
    finally:
        gc.set_threshold(*threshold)
    assert pauses.by_generation[0] >= 10


def test_install_is_idempotent_and_uninstall_stops_the_timing(pauses):
    pauses.install()
    assert gc.callbacks.count(pauses._on_collection) == 1
    pauses.uninstall()
    assert pauses._on_collection not in gc.callbacks
    gc.collect(0)
    assert sum(pauses.by_generation) == 0


def test_a_stop_without_its_start_is_ignored():
    pauses = CollectorPauses(clock=lambda: 1.0)
    pauses._on_collection("stop", {"generation": 0})  # installed while a collection was running
    assert pauses.histogram.snapshot().count == 0
