"""Prometheus metrics: a custom collector that reads the agent's own counters when scraped.

The query path keeps plain ints, dicts and fqdn_policy.ops.histogram.Histogram objects and never touches
prometheus-client; this collector turns them into metric families (labels, bucket series, the text
format) only when /metrics is asked, on the event loop between two turns, so it sees one consistent
moment. docs/operations.md lists every family; keep the two in step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from fqdn_policy.dnsproxy.codes import RCODE_NOERROR, RCODE_REFUSED, RCODE_SERVFAIL, qtype_name, rcode_name
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.policy.decide.decision import Outcome

if TYPE_CHECKING:
    from fqdn_policy.agent.runtime import Agent

PREFIX = "fqdn_policy"


def histogram_family(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    snapshot = histogram.snapshot()
    buckets = [(floatToGoString(bound), count) for bound, count in snapshot.cumulative()]
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], buckets, snapshot.total)
    return family


class AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        yield from self._dns(agent)
        yield from self._upstream(agent)
        yield from self._kernel(agent)
        yield from self._agent(agent)
        yield from self._denied(agent)
        yield from self._budgets(agent)

    def _dns(self, agent: Agent) -> Iterator[Metric]:
        gate = agent.gate
        queries = CounterMetricFamily(
            f"{PREFIX}_dns_queries",
            "Answered lookups by the policy decision (verdict) and query type",
            labels=["verdict", "qtype"],
        )
        responses = CounterMetricFamily(
            f"{PREFIX}_dns_responses", "Responses sent to clients by DNS rcode", labels=["rcode"]
        )
        by_label: dict[tuple[str, str], int] = {}
        by_rcode: dict[int, int] = {}
        if gate is not None:
            for (outcome, qtype, rcode), n in list(gate.stats.lookups.items()):
                label = (outcome, qtype_name(qtype) if qtype else "other")
                by_label[label] = by_label.get(label, 0) + n
                by_rcode[rcode] = by_rcode.get(rcode, 0) + n
            # A failed write turns an answer into SERVFAIL; only NOERROR answers carry addresses to write.
            by_rcode[RCODE_NOERROR] = by_rcode.get(RCODE_NOERROR, 0) - gate.stats.write_failures
        for outcome in Outcome:  # every verdict present from the start, so rate() has a baseline
            by_label.setdefault((outcome.value, "A"), 0)
        for (verdict, qtype), n in sorted(by_label.items()):
            queries.add_metric([verdict, qtype], n)
        resolver = agent.resolver
        if resolver is not None:
            by_rcode[RCODE_SERVFAIL] = by_rcode.get(RCODE_SERVFAIL, 0) + resolver.stats.servfail
            by_rcode[RCODE_REFUSED] = by_rcode.get(RCODE_REFUSED, 0) + resolver.stats.refused
        for rcode, n in sorted(by_rcode.items()):
            responses.add_metric([rcode_name(rcode)], n)
        yield queries
        yield responses
        limited = CounterMetricFamily(
            f"{PREFIX}_dns_rate_limited",
            "Queries answered REFUSED because their client exceeded --client-rate",
        )
        limited.add_metric([], resolver.stats.refused if resolver is not None else 0)
        yield limited
        repeats = CounterMetricFamily(
            f"{PREFIX}_dns_remembered_decisions",
            "Answers released on a remembered decision (covered, or allowing nothing), not matched again",
        )
        repeats.add_metric([], gate.stats.remembered if gate is not None else 0)
        yield repeats
        held = GaugeMetricFamily(f"{PREFIX}_answers_held", "Answers waiting for their kernel write now")
        held.add_metric([], gate.stats.held if gate is not None else 0)
        yield held
        if gate is not None:
            yield histogram_family(
                f"{PREFIX}_answer_hold_seconds",
                "Time an answer that needed a kernel write waited for it",
                gate.hold_time,
            )

    def _upstream(self, agent: Agent) -> Iterator[Metric]:
        forwarder = agent.forwarder
        yield histogram_family(
            f"{PREFIX}_upstream_latency_seconds",
            "Round trip of each answered upstream attempt",
            agent.upstream_latency,
        )
        reused = CounterMetricFamily(
            f"{PREFIX}_upstream_answers_reused",
            "Upstream answers identical to the question's previous one, whose parse was reused",
        )
        reused.add_metric([], forwarder.answers.hits)
        yield reused
        in_flight = GaugeMetricFamily(f"{PREFIX}_upstream_in_flight", "Upstream queries not yet answered")
        in_flight.add_metric([], forwarder.in_flight)
        yield in_flight
        errors = CounterMetricFamily(
            f"{PREFIX}_errors", "Failures by kind (see docs/operations.md)", labels=["kind"]
        )
        stats = forwarder.stats
        resolver_stats = agent.resolver.stats if agent.resolver is not None else None
        gate = agent.gate
        for kind, n in (
            ("nft_write", gate.stats.write_failures if gate is not None else 0),
            ("upstream_timeout", stats.timeouts),
            ("upstream_failed", stats.failed),
            ("upstream_rejected", stats.rejected),
            ("upstream_overloaded", stats.overloaded),
            ("malformed_query", resolver_stats.malformed if resolver_stats is not None else 0),
            ("budget_delete", gate.stats.evict_delete_failures if gate is not None else 0),
        ):
            errors.add_metric([kind], n)
        yield errors

    def _kernel(self, agent: Agent) -> Iterator[Metric]:
        yield histogram_family(
            f"{PREFIX}_nft_write_latency_seconds",
            "Duration of each nftables transaction (a group commit of many answers' writes)",
            agent.nft_latency,
        )
        transactions = CounterMetricFamily(
            f"{PREFIX}_nft_transactions",
            "nftables transactions run (netlink element batches and libnftables calls)",
        )
        transactions.add_metric([], agent.writer.stats.transactions)
        yield transactions
        written = CounterMetricFamily(
            f"{PREFIX}_set_elements_written", "Allow-set elements written for answers (new or extended)"
        )
        written.add_metric([], agent.gate.stats.elements_written if agent.gate is not None else 0)
        yield written
        elements = GaugeMetricFamily(
            f"{PREFIX}_set_elements",
            "Allow-set elements (pod . destination [. protocol [. port]]) the agent holds, by address family",
            labels=["family"],
        )
        elements.add_metric(["ipv4"], agent.table.counts[4])
        elements.add_metric(["ipv6"], agent.table.counts[6])
        yield elements

    def _agent(self, agent: Agent) -> Iterator[Metric]:
        health = agent.health
        reloads = CounterMetricFamily(
            f"{PREFIX}_policy_reloads", "Policy reloads by result", labels=["result"]
        )
        for result, n in health.reloads.items():
            reloads.add_metric([result], n)
        reloads.add_metric(["refused"], agent.source.refused)  # a refusal never reaches the agent
        yield reloads
        repairs = CounterMetricFamily(
            f"{PREFIX}_repairs", "Rebuilds of a deleted or broken table by result", labels=["result"]
        )
        for result, n in health.repairs.items():
            repairs.add_metric([result], n)
        yield repairs
        pods = GaugeMetricFamily(
            f"{PREFIX}_pods", "Pods the policy knows, by whether a policy selects them", labels=["enforced"]
        )
        policies = GaugeMetricFamily(f"{PREFIX}_policies", "FQDNNetworkPolicies loaded")
        if agent.gate is not None:
            index = agent.gate.index
            enforced = index.enforced_pods()
            pods.add_metric(["true"], enforced)
            pods.add_metric(["false"], len({p.key for p in index.policy_set.pods}) - enforced)
            policies.add_metric([], len(index.policy_set.policies))
        yield pods
        yield policies
        if agent.kernel is not None:
            kernel = GaugeMetricFamily(
                f"{PREFIX}_kernel_info",
                "1, labelled with the kernel release and how allow elements are refreshed on it",
                labels=["release", "element_refresh"],
            )
            kernel.add_metric([agent.kernel.release, agent.kernel.refresh.value], 1)
            yield kernel
        ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 when /readyz answers 200")
        ready.add_metric([], 0 if health.problems(time.monotonic()) else 1)
        yield ready
        yield histogram_family(
            f"{PREFIX}_gc_pause_seconds",
            "Time each garbage collection stopped the agent (every answer in flight waited as long)",
            agent.collector_pauses.histogram,
        )

    def _denied(self, agent: Agent) -> Iterator[Metric]:
        """What the kernel denied, from the NFLOG reader (fqdn_policy.agent.drops; docs/drops.md)."""
        mode = agent.config.mode.value
        denied = CounterMetricFamily(
            f"{PREFIX}_denied_connections",
            "Connections the policy chain denied (mode audit: would have denied), one per connection "
            "per 120 s, by pod (namespace/name, or the source address of a pod the agent does not know)",
            labels=["pod", "mode"],
        )
        for pod, n in sorted(agent.drops.stats.by_pod.items() if agent.drops is not None else ()):
            denied.add_metric([pod, mode], n)
        yield denied
        unlogged = CounterMetricFamily(
            f"{PREFIX}_denied_unlogged_packets",
            "Denied packets beyond --drop-log-rate: denied and counted by the kernel, not attributed",
        )
        unlogged.add_metric([], agent.drops.unlogged if agent.drops is not None else 0)
        yield unlogged

    def _budgets(self, agent: Agent) -> Iterator[Metric]:
        """The entry budgets (fqdn_policy.policy.state.budget) and the decision log's per-pod line rate."""
        evictions = CounterMetricFamily(
            f"{PREFIX}_budget_evictions",
            "Entries evicted because an entry budget was exceeded, by the pod whose entries went and the "
            "budget (pod: --max-entries-per-pod, agent: --max-entries)",
            labels=["pod", "budget"],
        )
        if agent.gate is not None:
            for (pod, budget), n in sorted(agent.gate.budget_report.evictions.items()):
                evictions.add_metric([pod, budget], n)
        yield evictions
        entries = GaugeMetricFamily(
            f"{PREFIX}_entries", "Live allowed (pod, name, address) entries the agent holds (--max-entries)"
        )
        entries.add_metric([], agent.table.resolutions.total)
        yield entries
        folded = CounterMetricFamily(
            f"{PREFIX}_decision_lines_folded",
            "Decision lines not written because their pod exceeded --log-rate (counted, not lost)",
            labels=["pod"],
        )
        for pod, n in sorted(agent.decision_log.folded.items()):
            folded.add_metric([pod], n)
        yield folded


def registry_for(agent: Agent) -> CollectorRegistry:
    # auto_describe off: describing would run collect() once at registration, before the agent starts
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    return registry
