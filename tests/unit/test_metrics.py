"""fqdn_policy.ops.metrics and fqdn_policy.ops.httpserve: the agent's counters as Prometheus families, over real HTTP."""

import asyncio
import gc
import io
import json
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from fqdn_policy.agent import collector as collector_module
from fqdn_policy.agent.collector import CollectorRegime
from fqdn_policy.agent.config import AgentConfig
from fqdn_policy.agent.drops import DropReporter
from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.agent.housekeeping import log_whole_collection
from fqdn_policy.agent.opswiring import metrics_providers, ops_routes
from fqdn_policy.agent.runtime import Agent
from fqdn_policy.dnsproxy.upstream import UpstreamAddress, UpstreamConfig
from fqdn_policy.ops.config import DecisionLogConfig, OpsConfig
from fqdn_policy.ops.httpserve import MAX_CONNECTIONS, HttpServer, Response, parse_request_line
from fqdn_policy.ops.metrics import registry_for
from fqdn_policy.policy.config import PolicyConfig
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.budget import EntryBudget
from fqdn_policy.sources.fileloader import load_text
from fqdn_policy.sources.filesource import FileSource
from tests.unit.test_gate import POLICY, HeldWriter, answer, query


@pytest.fixture
def agent():
    config = AgentConfig(UpstreamConfig((UpstreamAddress("192.0.2.53", 53),)))
    agent = Agent(config, FileSource(Path("unused.yaml")))
    clock = iter(float(t) for t in range(100, 10_000))
    agent.gate = PolicyGate(
        PolicyIndex(load_text(POLICY)),
        agent.table,
        AddressGuard(),
        HeldWriter(),
        "t",
        clock=lambda: next(clock),
    )
    return agent


def samples(agent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry_for(metrics_providers(agent))).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(agent, name, **labels):
    return samples(agent)[(name, tuple(sorted(labels.items())))]


def test_values_move_as_answers_flow(agent):
    gate = agent.gate
    assert value(agent, "fqdn_policy_dns_queries_total", verdict="allowed", qtype="A") == 0
    released = []
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), released.append)
    assert value(agent, "fqdn_policy_answers_held") == 1
    gate.writer.pending.pop()[1](None)  # the kernel acknowledges, one clock tick later
    gate.admit("10.244.1.10", "udp", query("www.cloudflare.com"), answer("198.51.100.20"), released.append)
    gate.admit("10.244.1.11", "udp", query(), answer("198.51.100.10"), released.append)
    assert released == [True, True, True]
    assert value(agent, "fqdn_policy_dns_queries_total", verdict="allowed", qtype="A") == 1
    assert value(agent, "fqdn_policy_dns_queries_total", verdict="name-not-allowed", qtype="A") == 1
    assert value(agent, "fqdn_policy_dns_queries_total", verdict="not-selected", qtype="A") == 1
    assert value(agent, "fqdn_policy_dns_responses_total", rcode="NOERROR") == 3
    assert value(agent, "fqdn_policy_answers_held") == 0
    assert value(agent, "fqdn_policy_answer_hold_seconds_count") == 1
    assert value(agent, "fqdn_policy_answer_hold_seconds_sum") == 1.0
    assert value(agent, "fqdn_policy_answer_hold_seconds_bucket", le="1.0") == 1
    assert value(agent, "fqdn_policy_answer_hold_seconds_bucket", le="0.5") == 0
    assert value(agent, "fqdn_policy_set_elements_written_total") == 1


def test_repeats_that_skip_work_are_counted(agent):
    gate = agent.gate
    same = answer("198.51.100.10")._replace(repeatable=True)  # as the parse memo hands it on
    gate.admit("10.244.1.10", "udp", query(), same, lambda ok: None)
    gate.writer.pending.pop()[1](None)
    for _ in range(3):  # covered once written: remembered, not decided again
        gate.admit("10.244.1.10", "udp", query(), same, lambda ok: None)
    assert value(agent, "fqdn_policy_dns_remembered_decisions_total") == 3
    assert value(agent, "fqdn_policy_dns_queries_total", verdict="allowed", qtype="A") == 4
    wire = DNSRecord.question("www.google.com").reply()
    wire.add_answer(RR("www.google.com", QTYPE.A, rdata=A("198.51.100.10"), ttl=300))
    for _ in range(3):  # kept at once (the memo has room), reused on the second and third
        agent.forwarder.answers.parse(bytes(wire.pack()), query().question)
    assert value(agent, "fqdn_policy_upstream_answers_reused_total") == 2


def test_failed_write_counts_as_servfail_and_an_error(agent):
    gate = agent.gate
    gate.admit("10.244.1.10", "udp", query(), answer("198.51.100.10"), lambda ok: None)
    gate.writer.pending.pop()[1](RuntimeError("no such table"))
    assert value(agent, "fqdn_policy_errors_total", kind="nft_write") == 1
    # the answer the gate turned into SERVFAIL is not a NOERROR response
    assert value(agent, "fqdn_policy_dns_responses_total", rcode="NOERROR") == 0


def test_unknown_query_types_are_folded_into_other(agent):
    for qtype in (4242, 4243):
        q = query()
        q = type(q)(q.id, q.flags, q.question, q.qname, qtype)
        agent.gate.admit("10.244.1.11", "udp", q, answer(), lambda ok: None)
    assert value(agent, "fqdn_policy_dns_queries_total", verdict="not-selected", qtype="other") == 2


def test_set_elements_by_family(agent):
    agent.table.adopt(("10.244.1.10", "198.51.100.10", "tcp", 443), 1e12, "a.example", None)
    agent.table.adopt(("10.244.1.10", "198.51.100.11", "tcp", 443), 1e12, "a.example", None)
    agent.table.adopt(("2001:db8:244::10", "2001:db8:100::10", "tcp", 443), 1e12, "a.example", None)
    assert value(agent, "fqdn_policy_set_elements", family="ipv4") == 2
    assert value(agent, "fqdn_policy_set_elements", family="ipv6") == 1
    agent.table.forget_expired(now=2e12)
    assert value(agent, "fqdn_policy_set_elements", family="ipv4") == 0


def test_histograms_read_the_agents_histograms(agent):
    agent.upstream_latency.observe(0.003)
    agent.nft_latency.observe(0.0002)
    agent.nft_latency.observe(0.02)
    assert value(agent, "fqdn_policy_upstream_latency_seconds_bucket", le="0.005") == 1
    assert value(agent, "fqdn_policy_upstream_latency_seconds_bucket", le="0.002") == 0
    assert value(agent, "fqdn_policy_nft_write_latency_seconds_count") == 2
    assert value(agent, "fqdn_policy_nft_write_latency_seconds_bucket", le="+Inf") == 2
    agent.collector_pauses.histogram.observe(0.004)
    assert value(agent, "fqdn_policy_gc_pause_seconds_bucket", le="0.005") == 1
    assert value(agent, "fqdn_policy_gc_pause_seconds_bucket", le="0.002") == 0


def test_agent_counters(agent):
    agent.source.refused = 1
    agent.health.record_repair(True, 1.0)
    agent.forwarder.stats.timeouts = 4
    agent.forwarder.in_flight = 7
    assert value(agent, "fqdn_policy_policy_reloads_total", result="refused") == 1
    assert value(agent, "fqdn_policy_repairs_total", result="ok") == 1
    assert value(agent, "fqdn_policy_errors_total", kind="upstream_timeout") == 4
    assert value(agent, "fqdn_policy_upstream_in_flight") == 7
    assert value(agent, "fqdn_policy_pods", enforced="true") == 1
    assert value(agent, "fqdn_policy_pods", enforced="false") == 1
    assert value(agent, "fqdn_policy_policies") == 1
    assert value(agent, "fqdn_policy_ready") == 0  # never started


@pytest.mark.parametrize(
    ("head", "parsed"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", ("GET", "/metrics", {})),
        (
            b"GET /explain?pod=default/web&host=a.com&port=443 HTTP/1.0\r\n\r\n",
            ("GET", "/explain", {"pod": "default/web", "host": "a.com", "port": "443"}),
        ),
        (b"GET /metrics\r\n\r\n", None),
        (b"garbage", None),
    ],
)
def test_request_line(head, parsed):
    assert parse_request_line(head) == parsed


async def http_get(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


def test_endpoints_over_http(agent):
    async def main():
        server = HttpServer("127.0.0.1", 0, ops_routes(agent))
        await server.start()
        port = server.bound_port
        try:
            status, headers, body = await http_get(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
            assert b"fqdn_policy_dns_queries_total" in body
            assert (await http_get(port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200
            status, _, body = await http_get(port, b"GET /readyz HTTP/1.1\r\n\r\n")
            assert status == 503 and b"starting" in body
            agent.health.record_start(asyncio.get_running_loop().time())
            status, _, body = await http_get(port, b"GET /readyz HTTP/1.1\r\n\r\n")
            assert (status, body) == (200, b"ready\n")
            agent.table.adopt(
                ("10.244.1.10", "198.51.100.10", "tcp", 443), 1e12, "www.google.com", "default/c"
            )
            status, _, body = await http_get(port, b"GET /state HTTP/1.1\r\n\r\n")
            state = json.loads(body)
            (resolution,) = state["resolutions"]
            assert {k: resolution[k] for k in ("pod", "name", "address")} == {
                "pod": "default/c",
                "name": "www.google.com",
                "address": "198.51.100.10",
            }
            assert state["ready"] is True and state["problems"] == []
            assert state["pods"][0] == {
                "pod": "default/c",
                "ips": ["10.244.1.10"],
                "enforced": True,
                "policies": ["default/p"],
            }
            status, _, body = await http_get(
                port, b"GET /explain?pod=default/c&host=www.google.com&port=80 HTTP/1.1\r\n\r\n"
            )
            assert status == 200 and json.loads(body)["verdict"] == "port-not-allowed"
            status, _, body = await http_get(port, b"GET /explain?pod=default/c HTTP/1.1\r\n\r\n")
            assert status == 400 and "required" in json.loads(body)["error"]
            status, _, body = await http_get(port, b"GET /explain?pod=a/b&host=x&port=99999 HTTP/1.1\r\n\r\n")
            assert status == 400
            assert (await http_get(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
            assert (await http_get(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
            assert (await http_get(port, b"nonsense\r\n\r\n"))[0] == 400
        finally:
            await server.stop()

    asyncio.run(main())


def test_async_handlers_are_awaited():
    async def slow(_query):
        await asyncio.sleep(0)
        return Response(200, b"later\n")

    async def main():
        server = HttpServer("127.0.0.1", 0, {"/slow": slow})
        await server.start()
        try:
            assert (await http_get(server.bound_port, b"GET /slow HTTP/1.1\r\n\r\n"))[2] == b"later\n"
        finally:
            await server.stop()

    asyncio.run(main())


def test_oversized_request_broken_handler_and_connection_cap():
    def broken(_query):
        raise KeyError("bug")

    async def main():
        server = HttpServer("127.0.0.1", 0, {"/broken": broken, "/ok": lambda _q: Response(200, b"ok\n")})
        await server.start()
        port = server.bound_port
        try:
            status, _, body = await http_get(port, b"GET /broken HTTP/1.1\r\n\r\n")
            assert status == 500 and b"KeyError" in body
            huge = b"GET /ok HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"
            assert (await http_get(port, huge))[0] == 400
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
            await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 2) == b""  # closed at once, nothing served
            writer.close()
            for _, w in idle:
                w.close()
            await asyncio.sleep(0.05)
            assert (await http_get(port, b"GET /ok HTTP/1.1\r\n\r\n"))[0] == 200  # free again
        finally:
            await server.stop()

    asyncio.run(main())


def test_denied_connections_by_pod(agent):
    assert value(agent, "fqdn_policy_denied_unlogged_packets_total") == 0
    agent.drops = DropReporter(4053, agent.gate, agent.tables, agent.writer)
    agent.drops.stats.by_pod["default/c"] = 3
    agent.drops.stats.by_pod["10.244.1.99"] = 1  # a source no pod has
    assert value(agent, "fqdn_policy_denied_connections_total", pod="default/c", mode="enforce") == 3
    assert value(agent, "fqdn_policy_denied_connections_total", pod="10.244.1.99", mode="enforce") == 1


def test_stats_line_carries_the_histograms_and_the_collectors_pauses(agent):
    agent.nft_latency.observe(0.0002)
    agent.collector_pauses.histogram.observe(0.004)
    agent.collector_pauses.by_generation[1] += 1
    agent.collector_pauses.longest = 0.004
    with capture_logs() as logs:
        agent.log_stats()
    (line,) = [entry for entry in logs if entry["event"] == "agent.stats"]
    assert line["nft_call_time"]["count"] == 1
    assert line["gc_pauses"]["count"] == 1
    assert line["gc_pauses"]["p99_ms"] == 5.0
    assert line["gc_pauses"]["by_generation"] == [0, 1, 0]
    assert line["gc_pauses"]["longest_ms"] == 4.0


class SteppedPerfCounter:
    """Stands in for fqdn_policy.agent.collector's `time`: each perf_counter reading is the next of `readings`."""

    def __init__(self, *readings):
        self.readings = iter(readings)

    def perf_counter(self):
        return next(self.readings)


CYCLES = 300


def test_a_whole_collection_is_logged_with_its_duration_and_what_it_freed(agent, monkeypatch):
    monkeypatch.setattr(collector_module, "time", SteppedPerfCounter(7.0, 7.04213))
    regime = CollectorRegime(20_000, lambda fn: None, lambda result: log_whole_collection(agent.log, result))
    regime.install()
    try:
        with capture_logs() as logs:
            gc.collect()  # a full collection: nothing else unreachable is left lying around
            # Garbage that slipped into the frozen heap (as young survivors are frozen at once): only a
            # whole collection, which unfreezes first, can find it. One self-referencing list each.
            for _ in range(CYCLES):
                cycle: list = []
                cycle.append(cycle)
            del cycle
            gc.freeze()
            regime.collect_whole()
    finally:
        regime.uninstall()
    (line,) = [entry for entry in logs if entry["event"] == "gc.whole_collection"]
    assert line["seconds"] == 0.0421  # the stepped readings' difference, rounded as logged
    assert line["unreachable"] == CYCLES
    assert line["allocated_blocks_after"] < line["allocated_blocks_before"]  # the lists were freed


def test_budget_evictions_entries_and_folded_lines(agent):
    config = AgentConfig(
        UpstreamConfig((UpstreamAddress("192.0.2.53", 53),)),
        policy=PolicyConfig(budget=EntryBudget(per_pod=1)),
        ops=OpsConfig(log=DecisionLogConfig(rate=1.0)),
    )
    agent = Agent(config, FileSource(Path("unused.yaml")))
    agent.decision_log.stream = io.StringIO()
    clock = iter(float(t) / 100 for t in range(100, 10_000))  # 10 ms a tick: lines outrun the rate
    agent.gate = PolicyGate(
        PolicyIndex(load_text(POLICY)), agent.table, AddressGuard(), HeldWriter(), "t",
        clock=lambda: next(clock), decision_log=agent.decision_log,
    )  # fmt: skip
    assert value(agent, "fqdn_policy_entries") == 0
    for address in ("198.51.100.10", "198.51.100.20"):  # the name moved: its old address is evicted
        agent.gate.admit("10.244.1.10", "udp", query(), answer(address), lambda ok: None)
        agent.gate.writer.pending.pop()[1](None)
    assert value(agent, "fqdn_policy_budget_evictions_total", pod="default/c", budget="pod") == 1
    assert value(agent, "fqdn_policy_entries") == 1
    for name in ("a.example", "b.example", "c.example"):
        agent.gate.admit("10.244.1.11", "udp", query(name), answer("198.51.100.10"), lambda ok: None)
    # Three not-selected decisions of pod o in 30 ms, each new to the log: a burst of 2, one folded.
    assert value(agent, "fqdn_policy_decision_lines_folded_total", pod="default/o") == 1
