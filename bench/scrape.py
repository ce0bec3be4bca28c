"""What one /metrics scrape costs the agent's event loop, by number of live allow-set elements.

The scrape is rendered on the loop that answers DNS (docs/operations.md says why), so its duration is
a pause every answer waiting behind it shares. Baseline in the same run: the same agent with no
elements. Nothing in a scrape should grow with the elements (the per-family counts are kept by the
AllowTable as elements come and go); this measures that it does not.

    .venv/bin/python -m bench.scrape            # no root, no network; ~10 s
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from prometheus_client import generate_latest

from fqdn_policy.agent.config import AgentConfig
from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.agent.opswiring import metrics_providers
from fqdn_policy.agent.runtime import Agent
from fqdn_policy.dnsproxy.upstream import UpstreamAddress, UpstreamConfig
from fqdn_policy.ops.metrics import registry_for
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.sources.fileloader import load_file
from fqdn_policy.sources.filesource import FileSource

REPO = Path(__file__).resolve().parents[1]


def agent_with(elements: int) -> Agent:
    policy_file = REPO / "config" / "policy.yaml"
    config = AgentConfig(UpstreamConfig((UpstreamAddress("192.0.2.53", 53),)))
    agent = Agent(config, FileSource(policy_file))
    index = PolicyIndex(load_file(policy_file))
    agent.gate = PolicyGate(index, agent.table, AddressGuard(), agent.writer, config.table)
    far = time.monotonic() + 3600
    for i in range(elements):
        dst = f"198.51.{(i >> 8) & 255}.{i & 255}" if i % 2 else f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1"
        agent.table.adopt(("10.244.1.10", dst, "tcp", 1024 + i // 65536), far, "", None)
    for i in range(1000):  # some traffic in every histogram and counter
        agent.upstream_latency.observe(0.001 * (i % 7))
        agent.nft_latency.observe(0.0002 * (i % 5))
        agent.gate.hold_time.observe(0.0003 * (i % 3))
    return agent


def scrape_ms(agent: Agent, runs: int) -> float:
    registry = registry_for(metrics_providers(agent))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        generate_latest(registry)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30, help="scrapes per size; the median is reported")
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 10_000, 100_000])
    args = parser.parse_args(argv)
    baseline = None
    print("| live elements | scrape median, ms | ratio to 0 elements |")
    print("|---:|---:|---:|")
    for size in args.sizes:
        ms = scrape_ms(agent_with(size), args.runs)
        baseline = baseline if baseline is not None else ms
        print(f"| {size:,} | {ms:.3f} | {ms / baseline:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
