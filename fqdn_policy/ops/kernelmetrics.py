"""The kernel side's metric families: nftables writes, allow-set elements and entries, entry budgets, and
the kernel the agent runs on."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fqdn_policy.enforcer.kernelprobe import KernelReport
from fqdn_policy.enforcer.writer import WriterStats
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.ops.metrics import PREFIX, Later, histogram_family
from fqdn_policy.policy.decide.stats import EnforcementStats
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.budgetreport import BudgetReport


class KernelWriteMetrics:
    """The writer's transactions and what they put in the allow sets."""

    def __init__(
        self,
        latency: Histogram,
        writer: WriterStats,
        decisions: Later[EnforcementStats],
        table: AllowTable,
    ) -> None:
        self.latency = latency
        self.writer = writer
        self.decisions = decisions
        self.table = table

    def collect(self) -> Iterator[Metric]:
        yield histogram_family(
            f"{PREFIX}_nft_write_latency_seconds",
            "Duration of each nftables transaction (a group commit of many answers' writes)",
            self.latency,
        )
        transactions = CounterMetricFamily(
            f"{PREFIX}_nft_transactions",
            "nftables transactions run (netlink element batches and libnftables calls)",
        )
        transactions.add_metric([], self.writer.transactions)
        yield transactions
        written = CounterMetricFamily(
            f"{PREFIX}_set_elements_written", "Allow-set elements written for answers (new or extended)"
        )
        decisions = self.decisions()
        written.add_metric([], decisions.elements_written if decisions is not None else 0)
        yield written
        elements = GaugeMetricFamily(
            f"{PREFIX}_set_elements",
            "Allow-set elements (pod . destination [. protocol [. port]]) the agent holds, by address family",
            labels=["family"],
        )
        elements.add_metric(["ipv4"], self.table.counts[4])
        elements.add_metric(["ipv6"], self.table.counts[6])
        yield elements


class KernelInfoMetrics:
    """What the start-up probe found (fqdn_policy.enforcer.kernelprobe); absent before it ran."""

    def __init__(self, kernel: Later[KernelReport]) -> None:
        self.kernel = kernel

    def collect(self) -> Iterator[Metric]:
        report = self.kernel()
        if report is not None:
            kernel = GaugeMetricFamily(
                f"{PREFIX}_kernel_info",
                "1, labelled with the kernel release and how allow elements are refreshed on it",
                labels=["release", "element_refresh"],
            )
            kernel.add_metric([report.release, report.refresh.value], 1)
            yield kernel


class BudgetMetrics:
    """The entry budgets (fqdn_policy.policy.state.budget): evictions, and the entries they bound."""

    def __init__(self, evictions: Later[BudgetReport], table: AllowTable) -> None:
        self.evictions = evictions
        self.table = table

    def collect(self) -> Iterator[Metric]:
        evictions = CounterMetricFamily(
            f"{PREFIX}_budget_evictions",
            "Entries evicted because an entry budget was exceeded, by the pod whose entries went and the "
            "budget (pod: --max-entries-per-pod, agent: --max-entries)",
            labels=["pod", "budget"],
        )
        report = self.evictions()
        if report is not None:
            for (pod, budget), n in sorted(report.evictions.items()):
                evictions.add_metric([pod, budget], n)
        yield evictions
        entries = GaugeMetricFamily(
            f"{PREFIX}_entries", "Live allowed (pod, name, address) entries the agent holds (--max-entries)"
        )
        entries.add_metric([], self.table.resolutions.total)
        yield entries
