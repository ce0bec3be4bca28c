"""The DNS side's metric families: decisions and responses, the upstream, and errors by kind."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fqdn_policy.dnsproxy.codes import RCODE_NOERROR, RCODE_REFUSED, RCODE_SERVFAIL, qtype_name, rcode_name
from fqdn_policy.dnsproxy.server import ServerStats
from fqdn_policy.dnsproxy.upstream import Forwarder, ForwarderStats
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.ops.metrics import PREFIX, Later, histogram_family
from fqdn_policy.policy.decide.decision import Outcome
from fqdn_policy.policy.decide.stats import EnforcementStats


class DnsDecisionMetrics:
    """Answered lookups by verdict, responses by rcode, and answers held for their kernel write."""

    def __init__(
        self,
        decisions: Later[EnforcementStats],
        hold_time: Later[Histogram],
        server: Later[ServerStats],
    ) -> None:
        self.decisions = decisions
        self.hold_time = hold_time
        self.server = server

    def collect(self) -> Iterator[Metric]:
        decisions, server = self.decisions(), self.server()
        yield from self._queries_and_responses(decisions, server)
        limited = CounterMetricFamily(
            f"{PREFIX}_dns_rate_limited",
            "Queries answered REFUSED because their client exceeded --client-rate",
        )
        limited.add_metric([], server.refused if server is not None else 0)
        yield limited
        repeats = CounterMetricFamily(
            f"{PREFIX}_dns_remembered_decisions",
            "Answers released on a remembered decision (covered, or allowing nothing), not matched again",
        )
        repeats.add_metric([], decisions.remembered if decisions is not None else 0)
        yield repeats
        held = GaugeMetricFamily(f"{PREFIX}_answers_held", "Answers waiting for their kernel write now")
        held.add_metric([], decisions.held if decisions is not None else 0)
        yield held
        hold_time = self.hold_time()
        if hold_time is not None:
            yield histogram_family(
                f"{PREFIX}_answer_hold_seconds",
                "Time an answer that needed a kernel write waited for it",
                hold_time,
            )

    @staticmethod
    def _queries_and_responses(
        decisions: EnforcementStats | None, server: ServerStats | None
    ) -> Iterator[Metric]:
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
        if decisions is not None:
            for (outcome, qtype, rcode), n in list(decisions.lookups.items()):
                label = (outcome, qtype_name(qtype) if qtype else "other")
                by_label[label] = by_label.get(label, 0) + n
                by_rcode[rcode] = by_rcode.get(rcode, 0) + n
            # A failed write turns an answer into SERVFAIL; only NOERROR answers carry addresses to write.
            by_rcode[RCODE_NOERROR] = by_rcode.get(RCODE_NOERROR, 0) - decisions.write_failures
        for outcome in Outcome:  # every verdict present from the start, so rate() has a baseline
            by_label.setdefault((outcome.value, "A"), 0)
        for (verdict, qtype), n in sorted(by_label.items()):
            queries.add_metric([verdict, qtype], n)
        if server is not None:
            by_rcode[RCODE_SERVFAIL] = by_rcode.get(RCODE_SERVFAIL, 0) + server.servfail
            by_rcode[RCODE_REFUSED] = by_rcode.get(RCODE_REFUSED, 0) + server.refused
        for rcode, n in sorted(by_rcode.items()):
            responses.add_metric([rcode_name(rcode)], n)
        yield queries
        yield responses


class UpstreamMetrics:
    """The forwarder: round trips, answers whose parse was reused, queries in flight."""

    def __init__(self, forwarder: Forwarder, latency: Histogram) -> None:
        self.forwarder = forwarder
        self.latency = latency

    def collect(self) -> Iterator[Metric]:
        yield histogram_family(
            f"{PREFIX}_upstream_latency_seconds", "Round trip of each answered upstream attempt", self.latency
        )
        reused = CounterMetricFamily(
            f"{PREFIX}_upstream_answers_reused",
            "Upstream answers identical to the question's previous one, whose parse was reused",
        )
        reused.add_metric([], self.forwarder.answers.hits)
        yield reused
        in_flight = GaugeMetricFamily(f"{PREFIX}_upstream_in_flight", "Upstream queries not yet answered")
        in_flight.add_metric([], self.forwarder.in_flight)
        yield in_flight


class ErrorMetrics:
    """Failures by kind, from the enforcement core, the forwarder and the server (docs/operations.md)."""

    def __init__(
        self, decisions: Later[EnforcementStats], upstream: ForwarderStats, server: Later[ServerStats]
    ) -> None:
        self.decisions = decisions
        self.upstream = upstream
        self.server = server

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            f"{PREFIX}_errors", "Failures by kind (see docs/operations.md)", labels=["kind"]
        )
        decisions, upstream, server = self.decisions(), self.upstream, self.server()
        for kind, n in (
            ("nft_write", decisions.write_failures if decisions is not None else 0),
            ("upstream_timeout", upstream.timeouts),
            ("upstream_failed", upstream.failed),
            ("upstream_rejected", upstream.rejected),
            ("upstream_overloaded", upstream.overloaded),
            ("malformed_query", server.malformed if server is not None else 0),
            ("budget_delete", decisions.evict_delete_failures if decisions is not None else 0),
        ):
            errors.add_metric([kind], n)
        yield errors
