"""The GKE article, replayed end to end on a Linux node (shared/reference/gke-fqdn-example.md)."""

import signal

import pytest

from tests.e2e.agentlab import PROXY_V6, article_policy, lab_pods, wait_for

pytestmark = pytest.mark.netns

GOOGLE = {4: "198.51.100.10", 6: "2001:db8:100::10"}
CLOUDFLARE = {4: "198.51.100.20", 6: "2001:db8:100::20"}
YOURDOMAIN = {4: "198.51.100.30", 6: "2001:db8:100::30"}
QTYPE = {4: "A", 6: "AAAA"}


def addresses(answer):
    return [a["data"] for a in answer["answers"]]


@pytest.mark.parametrize("family", [4, 6])
def test_article_end_to_end(agent_lab, family):
    env = agent_lab
    # Another table on the node: the agent must never touch it.
    env.lab.run(
        "node",
        ["nft", "add table inet bystander; add chain inet bystander c; add rule inet bystander c accept"],
    )
    bystander = env.nft("list", "table", "inet", "bystander")
    env.start_agent()
    qtype = QTYPE[family]
    server = "10.244.1.1:53" if family == 4 else PROXY_V6

    # Before any lookup the selected pod reaches nothing; the other pod everything.
    assert env.tcp("pod-a", GOOGLE[family], 443) == "timeout"
    assert env.tcp("pod-b", CLOUDFLARE[family], 443) == "connected"

    # nslookup www.google.com answers, and HTTPS to it connects.
    answer = env.dns("pod-a", "www.google.com", qtype, server=server)
    assert answer["rcode"] == "NOERROR" and addresses(answer) == [GOOGLE[family]]
    assert env.tcp("pod-a", GOOGLE[family], 443) == "connected"

    # *.yourdomain.com matches by pattern.
    assert addresses(env.dns("pod-a", "api.yourdomain.com", qtype, server=server)) == [YOURDOMAIN[family]]
    assert env.tcp("pod-a", YOURDOMAIN[family], 443) == "connected"

    # Not allowed: still resolves, but the connection is dropped (a timeout, not a refusal).
    answer = env.dns("pod-a", "www.cloudflare.com", qtype, server=server)
    assert addresses(answer) == [CLOUDFLARE[family]]
    assert env.tcp("pod-a", CLOUDFLARE[family], 443) == "timeout"

    # Wrong port: TCP 80 to an allowed name is dropped too.
    assert env.tcp("pod-a", GOOGLE[family], 80) == "timeout"

    # The unselected pod is untouched.
    env.dns("pod-b", "www.cloudflare.com", qtype, server=server)
    assert env.tcp("pod-b", CLOUDFLARE[family], 443) == "connected"
    assert env.tcp("pod-b", GOOGLE[family], 80) == "connected"

    # Policy re-applied without ports (SIGHUP): port 80 now works, with no new lookup.
    env.write_policy([article_policy(ports=False), *lab_pods()])
    env.agent.send_signal(signal.SIGHUP)
    wait_for(lambda: env.has_log("policy.loaded"), 5, "policy reload")
    assert env.tcp("pod-a", GOOGLE[family], 80) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE[family], 443) == "timeout"

    # Every decision was logged with pod, name, rule and allowed addresses.
    decisions = [
        e for e in env.logs() if e.get("event") == "dns.decision" and e.get("qname") == "www.google.com"
    ]
    assert decisions, env.agent_log.read_text()
    first = decisions[0]
    assert first["pod"] == "default/curl-client" and first["outcome"] == "allowed"
    assert first["rules"] == ["default/allow-out-fqdnnp#egress[0] (www.google.com)"]
    assert first["allowed"] == [{"address": GOOGLE[family], "ttl": 300, "timeout": 300}]
    denied = [
        e
        for e in env.logs()
        if e.get("qname") == "www.cloudflare.com" and e.get("pod") == "default/curl-client"
    ]
    assert denied[0]["outcome"] == "name-not-allowed"

    # SIGTERM: clean exit; the table and what it allows stay (no gap across a restart).
    assert env.stop_agent() == 0
    assert env.tcp("pod-a", GOOGLE[family], 80) == "connected"
    assert env.nft("list", "table", "inet", "bystander") == bystander
    tables = sorted(line.split()[-1] for line in env.nft("list", "tables").splitlines())
    assert tables == ["bystander", "fqdn_policy", "fqdn_policy_guard"]  # ours and the bystander only
