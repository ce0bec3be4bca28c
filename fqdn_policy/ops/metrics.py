"""Prometheus metrics: one collector that asks each component's provider for its families when scraped.

The query path keeps plain ints, dicts and fqdn_policy.ops.histogram.Histogram objects and never touches
prometheus-client; the providers (fqdn_policy.ops.dnsmetrics, kernelmetrics, agentmetrics) turn them into
metric families (labels, bucket series, the text format) only when /metrics is asked, on the event loop
between two turns, so they see one consistent moment. A provider is handed the objects it reads, never
the agent; the agent's wiring (fqdn_policy.agent.opswiring) builds the list. docs/operations.md lists
every family; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from fqdn_policy.ops.histogram import Histogram

PREFIX = "fqdn_policy"

T = TypeVar("T")
# An object that exists only once the agent has started (the gate, the resolver, the drop reader):
# read at each scrape, None before.
Later = Callable[[], T | None]


class MetricsProvider(Protocol):
    def collect(self) -> Iterable[Metric]: ...


def histogram_family(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    snapshot = histogram.snapshot()
    buckets = [(floatToGoString(bound), count) for bound, count in snapshot.cumulative()]
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], buckets, snapshot.total)
    return family


class ProvidersCollector(Collector):
    def __init__(self, providers: Sequence[MetricsProvider]) -> None:
        self.providers = list(providers)

    def collect(self) -> Iterator[Metric]:
        for provider in self.providers:
            yield from provider.collect()


def registry_for(providers: Sequence[MetricsProvider]) -> CollectorRegistry:
    # auto_describe off: describing would run collect() once at registration, before the agent starts
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProvidersCollector(providers))
    return registry
