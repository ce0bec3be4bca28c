"""What the operator endpoints are handed: each metrics provider and each route gets the objects it
serves (fqdn_policy.ops never sees the Agent). Objects made only at start (the gate, the resolver, the
drop reader, the kernel report) are read through the agent at each request, None before they exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fqdn_policy.dnsproxy.server import ServerStats
from fqdn_policy.enforcer.kernelprobe import KernelReport
from fqdn_policy.ops.agentmetrics import (
    DecisionLogMetrics,
    DropMetrics,
    GcPauseMetrics,
    HealthMetrics,
    PolicyMetrics,
    SniMetrics,
)
from fqdn_policy.ops.dnsmetrics import DnsDecisionMetrics, ErrorMetrics, UpstreamMetrics
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.ops.httpserve import Handler
from fqdn_policy.ops.kernelmetrics import BudgetMetrics, KernelInfoMetrics, KernelWriteMetrics
from fqdn_policy.ops.metrics import MetricsProvider, registry_for
from fqdn_policy.ops.opsapi import routes
from fqdn_policy.policy.decide.snijudge import SniStats
from fqdn_policy.policy.decide.stats import EnforcementStats
from fqdn_policy.policy.diagnose.dropstats import DropStats
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.budgetreport import BudgetReport

if TYPE_CHECKING:
    from fqdn_policy.agent.runtime import Agent


def metrics_providers(agent: Agent) -> list[MetricsProvider]:
    """In the order the families are exposed."""

    def decisions() -> EnforcementStats | None:
        return agent.gate.stats if agent.gate is not None else None

    def hold_time() -> Histogram | None:
        return agent.gate.hold_time if agent.gate is not None else None

    def server() -> ServerStats | None:
        return agent.resolver.stats if agent.resolver is not None else None

    def evictions() -> BudgetReport | None:
        return agent.gate.budget_report if agent.gate is not None else None

    def kernel() -> KernelReport | None:
        return agent.kernel

    def drops() -> DropStats | None:
        return agent.drops.stats if agent.drops is not None else None

    def sni() -> SniStats | None:
        return agent.sni.checker.stats if agent.sni.checker is not None else None

    return [
        DnsDecisionMetrics(decisions, hold_time, server),
        UpstreamMetrics(agent.forwarder, agent.upstream_latency),
        ErrorMetrics(decisions, agent.forwarder.stats, server),
        KernelWriteMetrics(agent.nft_latency, agent.writer.stats, decisions, agent.table),
        HealthMetrics(agent.health, agent.source),
        PolicyMetrics(lambda: current_index(agent)),
        KernelInfoMetrics(kernel),
        GcPauseMetrics(agent.collector_pauses.histogram),
        DropMetrics(agent.config.enforcer.mode, drops),
        SniMetrics(sni),
        BudgetMetrics(evictions, agent.table),
        DecisionLogMetrics(agent.decision_log),
    ]


def current_index(agent: Agent) -> PolicyIndex | None:
    return agent.gate.index if agent.gate is not None else None


def ops_routes(agent: Agent) -> dict[str, Handler]:
    return routes(
        health=agent.health,
        index=lambda: current_index(agent),
        table=agent.table,
        registry=registry_for(metrics_providers(agent)),
        nft_table=agent.config.enforcer.table,
        reject=agent.config.enforcer.reject,
    )
