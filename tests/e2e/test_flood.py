"""Issue 17's flood, replayed in the lab (bounded): one selected pod asks tens of thousands of unique
names under `*.flood.example`, each answered by a hostile server with its own address and TTL 86,400,
with `--client-rate 0`. The pod stays at its entry budget, the agent's memory stays bounded, another
pod resolves and connects throughout, and the overflow shows in the log and on /metrics."""

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.agentlab import AgentLab, pod_doc, wait_for
from tests.lab.pyrun import module_argv, module_env

pytestmark = pytest.mark.netns

FLOOD_POD, QUIET_POD = "default/curl-client", "default/other"
BUDGET = 200
NAMES = 20_000
RSS_GROWTH_LIMIT_KB = 64 * 1024
BANNER = "198.51.100.30"  # first.flood.example: a host that answers on 443


def policies() -> list[dict]:
    def allow(name: str, app: str, match: dict) -> dict:
        return {
            "apiVersion": "networking.gke.io/v1alpha1",
            "kind": "FQDNNetworkPolicy",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "podSelector": {"matchLabels": {"app": app}},
                "egress": [{"matches": [match], "ports": [{"protocol": "TCP", "port": 443}]}],
            },
        }

    return [
        allow("flood", "curl-client", {"pattern": "*.flood.example"}),
        allow("quiet", "other", {"name": "www.google.com"}),
        pod_doc("curl-client", {"app": "curl-client"}, "10.244.1.10", "2001:db8:244::10"),
        pod_doc("other", {"app": "other"}, "10.244.1.11", "2001:db8:244::11"),
    ]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def start_hostile_upstream(env: AgentLab) -> None:
    ready = env.workdir / "floodserve-ready.json"
    argv = module_argv("tests.lab.floodserve", "--listen", "198.51.100.53:5353", "--ready-file", str(ready))
    log = open(env.workdir / "floodserve.log", "wb")  # noqa: SIM115 - the child writes to it until it exits
    env.lab.popen("inet", argv, env=module_env(), stdout=log, stderr=log)
    wait_for(ready.exists, 10, "the hostile upstream listening")
    env.upstream = "198.51.100.53:5353"


def quiet_pod_loop(env: AgentLab, stop: threading.Event, results: list[tuple[str, str]]) -> None:
    """The other pod, throughout: a lookup, then a new connection to what it allowed."""
    while not stop.is_set():
        rcode = env.dns("pod-b", "www.google.com")["rcode"]
        results.append((rcode, env.tcp("pod-b", "198.51.100.10", 443, timeout=2.0)))
        time.sleep(0.2)


def flood(env: AgentLab, agent_pid: int, names: int) -> tuple[dict, int]:
    """Run the flood from pod-a to its end (at most 90 s): its result and the agent's peak RSS."""
    argv = module_argv("tests.lab.dnsflood", "--server", "10.244.1.1:53", "--count", str(names))
    peak = 0
    proc = env.lab.popen("pod-a", [*argv, "--seconds", "90"], env=module_env(), stdout=-1, text=True)
    while proc.poll() is None:
        peak = max(peak, rss_kb(agent_pid))
        time.sleep(0.2)
    return json.loads(proc.stdout.read()), max(peak, rss_kb(agent_pid))


def test_a_unique_name_flood_stays_within_the_pods_budget(agent_lab):
    env = agent_lab
    env.write_policy(policies())
    start_hostile_upstream(env)
    agent = env.start_agent("--client-rate", "0", "--max-entries-per-pod", str(BUDGET), "--log-rate", "20")
    assert env.dns("pod-a", "first.flood.example")["rcode"] == "NOERROR"
    assert env.tcp("pod-a", BANNER, 443) == "connected"
    assert env.dns("pod-b", "www.google.com")["rcode"] == "NOERROR"
    time.sleep(1.0)
    idle = rss_kb(agent.pid)

    stop, quiet = threading.Event(), []
    loop = threading.Thread(target=quiet_pod_loop, args=(env, stop, quiet), daemon=True)
    loop.start()
    try:
        result, peak = flood(env, agent.pid, NAMES)
    finally:
        stop.set()
        loop.join(timeout=30)
    peak = max(peak, idle)

    # Every name got its answer: the budget evicts, it never refuses.
    assert result["answered"] == NAMES, result
    # The pod holds its budget: its entries, the kernel's elements, every other name evicted.
    assert env.metric("fqdn_policy_entries") == BUDGET + 1  # and the quiet pod's one
    elements = json.loads(env.nft("-j", "list", "set", "inet", "fqdn_policy", "allow_v4_port"))
    keys = [
        e["elem"]["val"]["concat"] if "elem" in e else e["concat"]
        for item in elements["nftables"]
        if "set" in item
        for e in item["set"].get("elem", [])
    ]
    assert 0 < sum(1 for k in keys if k[0] == "10.244.1.10") <= BUDGET
    evicted = env.metric("fqdn_policy_budget_evictions_total", pod=FLOOD_POD, budget="pod")
    assert evicted == NAMES + 1 - BUDGET  # first.flood.example and the flood, less what is kept
    assert env.metric("fqdn_policy_budget_evictions_total", pod=QUIET_POD, budget="pod") == 0
    # Memory: bounded by the budget, not by the flood.
    assert peak - idle <= RSS_GROWTH_LIMIT_KB, (idle, peak)
    # The other pod resolved and connected throughout.
    assert len(quiet) >= 3 and all(r == ("NOERROR", "connected") for r in quiet), quiet
    # The evicted first entry is closed for new connections, and a new lookup opens it again.
    assert env.tcp("pod-a", BANNER, 443) == "timeout"
    assert env.dns("pod-a", "first.flood.example")["rcode"] == "NOERROR"
    assert env.tcp("pod-a", BANNER, 443) == "connected"

    # The log: a few budget lines with the counts, decision lines bounded, what was folded counted.
    wait_for(lambda: env.has_log("dns.decisions_folded", pod=FLOOD_POD), 15, "a dns.decisions_folded line")
    logs = env.logs()
    budget_lines = [e for e in logs if e.get("event") == "dns.budget_exceeded"]
    assert budget_lines and all(e["pod"] == FLOOD_POD for e in budget_lines)
    assert len(budget_lines) <= result["seconds"] / 10 + 2  # one per 10 s, never one per name
    assert sum(e["evicted"]["pod"] for e in budget_lines) <= evicted
    decisions = sum(1 for e in logs if e.get("event") == "dns.decision" and e.get("pod") == FLOOD_POD)
    assert decisions <= 40 + 20 * (result["seconds"] + 5)  # a burst of 40, then 20 a second
    folded = env.metric("fqdn_policy_decision_lines_folded_total", pod=FLOOD_POD)
    assert folded > 0 and decisions + folded >= NAMES
    assert env.stop_agent() == 0, Path(env.agent_log).read_text()[-2000:]
    print(json.dumps({"flood": result, "idle_kb": idle, "peak_kb": peak, "folded": folded}), file=sys.stderr)


def test_the_agents_budget_takes_from_the_flooding_pod_not_the_quiet_one(agent_lab):
    env = agent_lab
    env.write_policy(policies())
    start_hostile_upstream(env)
    agent = env.start_agent("--client-rate", "0", "--max-entries", "100", "--log-rate", "20")
    assert env.dns("pod-b", "www.google.com")["rcode"] == "NOERROR"  # the quiet pod's one entry
    result, _ = flood(env, agent.pid, 3000)
    assert result["answered"] == 3000, result
    assert env.metric("fqdn_policy_entries") == 100
    assert env.metric("fqdn_policy_budget_evictions_total", pod=FLOOD_POD, budget="agent") == 3000 - 99
    assert env.metric("fqdn_policy_budget_evictions_total", pod=QUIET_POD, budget="agent") == 0
    assert env.tcp("pod-b", "198.51.100.10", 443) == "connected"
    wait_for(lambda: env.has_log("dns.budget_exceeded", pod=FLOOD_POD), 15, "a dns.budget_exceeded line")
