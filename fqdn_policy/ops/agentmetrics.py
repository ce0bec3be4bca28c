"""The agent's own metric families: reloads, repairs and readiness, the policy it holds, collector
pauses, denied connections, and folded decision lines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fqdn_policy.enforcer import ruleset
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.ops.health import Health
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.ops.metrics import PREFIX, Later, histogram_family
from fqdn_policy.policy.decide.snijudge import SniStats
from fqdn_policy.policy.diagnose.dropstats import DropStats
from fqdn_policy.policy.match.ruleindex import PolicyIndex


class Refusals(Protocol):
    """The policy source: a refused input never reaches the agent, so only the source counts it."""

    refused: int


class HealthMetrics:
    """Reloads and repairs by result, and whether /readyz answers 200."""

    def __init__(self, health: Health, source: Refusals, clock: Callable[[], float] = time.monotonic) -> None:
        self.health = health
        self.source = source
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        health = self.health
        reloads = CounterMetricFamily(
            f"{PREFIX}_policy_reloads", "Policy reloads by result", labels=["result"]
        )
        for result, n in health.reloads.items():
            reloads.add_metric([result], n)
        reloads.add_metric(["refused"], self.source.refused)
        yield reloads
        repairs = CounterMetricFamily(
            f"{PREFIX}_repairs", "Rebuilds of a deleted or broken table by result", labels=["result"]
        )
        for result, n in health.repairs.items():
            repairs.add_metric([result], n)
        yield repairs
        ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 when /readyz answers 200")
        ready.add_metric([], 0 if health.problems(self.clock()) else 1)
        yield ready


class PolicyMetrics:
    """The policy in force: pods it knows, by whether one selects them, and policies loaded."""

    def __init__(self, index: Later[PolicyIndex]) -> None:
        self.index = index

    def collect(self) -> Iterator[Metric]:
        pods = GaugeMetricFamily(
            f"{PREFIX}_pods", "Pods the policy knows, by whether a policy selects them", labels=["enforced"]
        )
        policies = GaugeMetricFamily(f"{PREFIX}_policies", "FQDNNetworkPolicies loaded")
        index = self.index()
        if index is not None:
            enforced = index.enforced_pods()
            pods.add_metric(["true"], enforced)
            pods.add_metric(["false"], len({p.key for p in index.policy_set.pods}) - enforced)
            policies.add_metric([], len(index.policy_set.policies))
        yield pods
        yield policies


class GcPauseMetrics:
    """Collector pauses (fqdn_policy.ops.collectorpauses)."""

    def __init__(self, pauses: Histogram) -> None:
        self.pauses = pauses

    def collect(self) -> Iterator[Metric]:
        yield histogram_family(
            f"{PREFIX}_gc_pause_seconds",
            "Time each garbage collection stopped the agent (every answer in flight waited as long)",
            self.pauses,
        )


class DropMetrics:
    """What the kernel denied, from the NFLOG reader (fqdn_policy.agent.drops; docs/drops.md)."""

    def __init__(self, mode: ruleset.Mode, drops: Later[DropStats]) -> None:
        self.mode = mode
        self.drops = drops

    def collect(self) -> Iterator[Metric]:
        denied = CounterMetricFamily(
            f"{PREFIX}_denied_connections",
            "Connections the policy chain denied (mode audit: would have denied), one per connection "
            "per 120 s, by pod (namespace/name, or the source address of a pod the agent does not know)",
            labels=["pod", "mode"],
        )
        drops = self.drops()
        for pod, n in sorted(drops.by_pod.items() if drops is not None else ()):
            denied.add_metric([pod, self.mode.value], n)
        yield denied
        unlogged = CounterMetricFamily(
            f"{PREFIX}_denied_unlogged_packets",
            "Denied packets beyond --drop-log-rate: denied and counted by the kernel, not attributed",
        )
        unlogged.add_metric([], drops.unlogged if drops is not None else 0)
        yield unlogged


class SniMetrics:
    """Verified connections (verify-sni; docs/sni.md), from the queue reader (fqdn_policy.agent.snicheck)."""

    def __init__(self, sni: Later[SniStats]) -> None:
        self.sni = sni

    def collect(self) -> Iterator[Metric]:
        stats = self.sni()
        connections = CounterMetricFamily(
            f"{PREFIX}_sni_connections",
            "New TCP connections whose first bytes were verified (TLS server_name, HTTP Host), by pod "
            "and verdict: allowed, denied (reset), would_deny (audit mode: let through)",
            labels=["pod", "verdict"],
        )
        for (pod, verdict), n in sorted(stats.connections.items() if stats is not None else ()):
            connections.add_metric([pod, verdict], n)
        yield connections
        for name, text, value in (
            ("sni_unreadable_packets", "Queued packets that were not a whole TCP segment (denied)",
             stats.unreadable_packets if stats else 0),
            ("sni_queue_overflows", "Times the verify-sni queue reader's buffer was full (packets dropped)",
             stats.queue_overflows if stats else 0),
        ):  # fmt: skip
            counter = CounterMetricFamily(f"{PREFIX}_{name}", text)
            counter.add_metric([], value)
            yield counter
        held = GaugeMetricFamily(
            f"{PREFIX}_sni_held_connections",
            "Connections whose first bytes are incomplete, held in the queue",
        )
        held.add_metric([], stats.held if stats else 0)
        yield held


class DecisionLogMetrics:
    """The decision log's per-pod line rate (fqdn_policy.ops.decisionlog)."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

    def collect(self) -> Iterator[Metric]:
        folded = CounterMetricFamily(
            f"{PREFIX}_decision_lines_folded",
            "Decision lines not written because their pod exceeded --log-rate (counted, not lost)",
            labels=["pod"],
        )
        for pod, n in sorted(self.log.folded.items()):
            folded.add_metric([pod], n)
        yield folded
