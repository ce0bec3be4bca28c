"""Kubernetes node wiring: pods' DNS to the cluster DNS service is DNATed to the agent while it runs.

The lab plays a cluster: `CLUSTER_DNS` is the DNS service address, which a stand-in for kube-proxy
(a nat table of the test's own, at kube-proxy's priority) DNATs to the DNS "pod" on the fake internet,
as kube-proxy would to a CoreDNS endpoint. That endpoint is exempt, as the cluster's ranges are in a
real deployment, so pods can still resolve when the agent is gone.
"""

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.agentlab import AGENT, wait_for
from tests.lab.addressing import DNS_V4, DNS_V6

pytestmark = pytest.mark.netns

CLUSTER_DNS = "198.51.100.153"  # assigned to no host: reachable only through the service DNAT
CLUSTER_DNS_V6 = "2001:db8:100::153"
GOOGLE, CLOUDFLARE = "198.51.100.10", "198.51.100.20"
DNS_TABLE = "fqdn_policy_dns"
KUBE_PROXY_STANDIN = f"""
table inet kube_proxy_standin {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {CLUSTER_DNS} meta l4proto {{ udp, tcp }} th dport 53 dnat ip to {DNS_V4}:53
        ip6 daddr {CLUSTER_DNS_V6} meta l4proto {{ udp, tcp }} th dport 53 dnat ip6 to [{DNS_V6}]:53
    }}
}}
"""
REDIRECT = (
    *("--dns-service", CLUSTER_DNS, "--dns-service", f"[{CLUSTER_DNS_V6}]:53"),
    *("--exempt", f"{DNS_V4}/32", "--exempt", f"{DNS_V6}/128", "--log-decisions", "all"),
)


@pytest.fixture
def cluster_lab(agent_lab):
    agent_lab.lab.run("node", ["nft", "-f", "-"], input=KUBE_PROXY_STANDIN)
    return agent_lab


def ask(env, pod="pod-a", name="www.google.com", tcp=False, sport=0, server=f"{CLUSTER_DNS}:53"):
    argv = ["dns", name, "A", "--server", server, *(["--tcp"] if tcp else [])]
    return env.probe(pod, *argv, *(["--sport", str(sport)] if sport else []))


def decisions(env, path=None, pod="default/curl-client", qname="www.google.com"):
    return [
        e
        for e in env.logs(path)
        if e.get("event") == "dns.decision" and e.get("pod") == pod and e.get("qname") == qname
    ]


def dns_table_present(env) -> bool:
    return f"table inet {DNS_TABLE}" in env.nft("list", "tables")


def start_second_agent(env, log: Path) -> subprocess.Popen:
    out = open(log, "a")  # noqa: SIM115 - the child writes to it until it exits
    proc = env.lab.popen("node", env.agent_argv(*REDIRECT), stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: any(e.get("event") == "agent.ready" for e in env.logs(log)), 15, "second agent ready")
    return proc


def test_pod_queries_to_the_cluster_dns_reach_the_agent_and_are_enforced(cluster_lab):
    env = cluster_lab
    env.start_agent(*REDIRECT)
    assert env.has_log("dns.redirect_installed", reason="start")
    answer = ask(env)
    assert answer["rcode"] == "NOERROR" and answer["answers"][0]["data"] == GOOGLE
    (decision,) = decisions(env)
    assert decision["client"] == "10.244.1.10" and decision["outcome"] == "allowed"
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert ask(env, name="www.cloudflare.com")["rcode"] == "NOERROR"  # resolution is never blocked
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    assert ask(env, tcp=True)["rcode"] == "NOERROR"  # TCP is redirected too
    assert len(decisions(env)) == 2
    assert ask(env, server=f"[{CLUSTER_DNS_V6}]:53")["rcode"] == "NOERROR"  # and IPv6
    assert decisions(env)[-1]["client"] == "2001:db8:244::10"


def test_sigterm_removes_the_redirect_and_pods_resolve_directly(cluster_lab):
    env = cluster_lab
    env.start_agent(*REDIRECT)
    ask(env)
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.stop_agent() == 0
    assert env.has_log("dns.redirect_removed")
    assert not dns_table_present(env)
    assert "table inet fqdn_policy" in env.nft("list", "tables")  # enforcement stays
    before = env.internet.query_count("www.cloudflare.com")
    assert ask(env, name="www.cloudflare.com")["rcode"] == "NOERROR"  # fails open: the cluster DNS answers
    assert env.internet.query_count("www.cloudflare.com") == before + 1
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"  # but nothing new is allowed
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"  # and what was allowed stays


def test_stopping_the_older_of_two_agents_keeps_the_redirect(cluster_lab, tmp_path):
    env = cluster_lab
    env.start_agent(*REDIRECT)
    newer_log = tmp_path / "newer.log"
    newer = start_second_agent(env, newer_log)
    (newer_token,) = {e["owner"] for e in env.logs(newer_log) if e.get("event") == "dns.redirect_installed"}
    assert f"owner={newer_token}" in env.nft("list", "table", "inet", DNS_TABLE)

    assert env.stop_agent() == 0  # the older one, as a rolling update does
    assert env.has_log("dns.redirect_kept")
    assert dns_table_present(env)
    assert ask(env)["rcode"] == "NOERROR"
    assert len(decisions(env, newer_log)) == 1  # the newer agent answered

    newer.send_signal(signal.SIGTERM)
    assert newer.wait(timeout=10) == 0
    assert not dns_table_present(env)


def test_stopping_the_newer_agent_first_hands_the_redirect_back(cluster_lab, tmp_path):
    env = cluster_lab
    env.start_agent(*REDIRECT)
    newer = start_second_agent(env, tmp_path / "newer.log")
    newer.send_signal(signal.SIGTERM)
    assert newer.wait(timeout=10) == 0
    # The newer one owned the redirect and removed it; the older one's watchdog puts it back.
    wait_for(lambda: env.has_log("dns.redirect_installed", reason="table or chain missing"), 5, "re-install")
    assert dns_table_present(env)
    ask(env)
    assert len(decisions(env)) == 1


@pytest.mark.parametrize("server", [f"{CLUSTER_DNS}:53", f"[{CLUSTER_DNS_V6}]:53"], ids=["ipv4", "ipv6"])
def test_an_existing_udp_flow_follows_the_redirect_both_ways(cluster_lab, server):
    """A resolver that keeps one source port keeps one conntrack entry: it must be moved to the proxy
    when the redirect appears, and back to the cluster DNS when it goes."""
    env = cluster_lab
    sport = 40053
    # before the agent: straight to the cluster DNS
    assert ask(env, sport=sport, server=server)["rcode"] == "NOERROR"
    env.start_agent(*REDIRECT)
    assert env.has_log("dns.conntrack_flushed", redirected=True)
    assert ask(env, sport=sport, server=server)["rcode"] == "NOERROR"
    assert len(decisions(env)) == 1  # the same flow now reaches the agent
    assert env.stop_agent() == 0
    assert env.has_log("dns.conntrack_flushed", redirected=False)
    # Without the flush this packet would follow the old entry to the proxy address: refused.
    assert ask(env, sport=sport, server=server)["result"] == "answered"


def test_teardown_deletes_both_tables(cluster_lab):
    env = cluster_lab
    env.start_agent(*REDIRECT)
    env.stop_agent(signal.SIGKILL)
    assert dns_table_present(env)
    out = env.lab.run("node", [AGENT, "teardown"]).stdout
    assert f"deleted table inet {DNS_TABLE}" in out and "deleted table inet fqdn_policy" in out
    assert "fqdn_policy" not in env.nft("list", "tables")


def test_guard_removes_the_redirect_of_a_crashed_agent_and_leaves_a_live_one(cluster_lab, tmp_path):
    env = cluster_lab
    guard_log = tmp_path / "guard.log"
    out = open(guard_log, "a")  # noqa: SIM115 - the child writes to it until it exits
    guard = env.lab.popen(
        "node", [AGENT, "dns-guard", "--interval", "0.2"], stdout=out, stderr=subprocess.STDOUT
    )
    wait_for(lambda: any(e.get("event") == "dns_guard.ready" for e in env.logs(guard_log)), 10, "guard ready")
    env.start_agent(*REDIRECT)
    assert ask(env)["rcode"] == "NOERROR"
    time.sleep(1.0)  # five guard intervals: a live agent's redirect stays
    assert dns_table_present(env)

    env.agent.send_signal(signal.SIGKILL)  # a crash: no cleanup of its own
    env.agent.wait(timeout=10)
    assert dns_table_present(env)
    wait_for(lambda: not dns_table_present(env), 3, "guard removing the orphaned redirect")
    assert any(e.get("event") == "dns.redirect_orphaned" for e in env.logs(guard_log))
    before = env.internet.query_count("www.google.com")
    assert ask(env)["rcode"] == "NOERROR"  # the cluster DNS answers directly
    assert env.internet.query_count("www.google.com") == before + 1

    env.start_agent(*REDIRECT)  # back: the redirect returns, and the guard leaves it alone
    time.sleep(1.0)  # five guard intervals
    assert dns_table_present(env)
    assert ask(env)["rcode"] == "NOERROR"
    assert len(decisions(env)) == 2
    guard.send_signal(signal.SIGTERM)
    assert guard.wait(timeout=5) == 0


def test_the_daemonsets_proxy_address_and_flags_work_on_a_node(cluster_lab):
    """The init container's script and the ConfigMap's --listen, as deploy/ ships them, in the lab node."""
    env = cluster_lab
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    daemonset = yaml.safe_load((deploy / "daemonset.yaml").read_text())
    (init,) = daemonset["spec"]["template"]["spec"]["initContainers"]
    for _ in range(2):  # a restarted pod runs it again
        env.lab.run("node", init["command"])
    flags = yaml.safe_load((deploy / "configmap.yaml").read_text())["data"]["run.flags"].split()
    listen = next(f.split("=", 1)[1] for f in flags if f.startswith("--listen="))
    v4_only = ("--dns-service", CLUSTER_DNS, "--exempt", f"{DNS_V4}/32", "--log-decisions", "all")
    env.start_agent(*v4_only, listen=(listen,))
    assert ask(env)["rcode"] == "NOERROR"
    assert ask(env, tcp=True)["rcode"] == "NOERROR"
    assert len(decisions(env)) == 2
    assert env.stop_agent() == 0
    assert not dns_table_present(env)
    assert ask(env)["rcode"] == "NOERROR"
