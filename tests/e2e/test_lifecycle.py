"""Reloads, bad files, TCP, a deleted table and a restart, against the real agent in namespaces."""

import json
import time

import pytest

from tests.e2e.agentlab import article_policy, lab_pods, wait_for

pytestmark = pytest.mark.netns

GOOGLE, CLOUDFLARE = "198.51.100.10", "198.51.100.20"


def test_changed_file_is_picked_up_within_two_seconds(agent_lab):
    env = agent_lab
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    assert env.tcp("pod-a", GOOGLE, 80) == "timeout"
    env.write_policy([article_policy(ports=False), *lab_pods()])
    written = time.monotonic()
    wait_for(lambda: env.has_log("policy.loaded", reason="file changed"), 2.0, "reload of the changed file")
    assert time.monotonic() - written < 2.0
    assert env.tcp("pod-a", GOOGLE, 80) == "connected"


def test_bad_file_keeps_the_last_good_policy(agent_lab):
    env = agent_lab
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    env.policy_file.write_text(env.policy_file.read_text().replace("protocol: TCP", "protocol: TCPP"))
    wait_for(lambda: env.has_log("policy.refused"), 3.0, "refusal of the bad file")
    refused = next(e for e in env.logs() if e["event"] == "policy.refused")
    assert "'TCPP' is not one of: TCP, UDP, ALL" in refused["problems"][0]
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", GOOGLE, 80) == "timeout"
    env.dns("pod-a", "www.cloudflare.com")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    # still answering and enforcing after the refusal
    assert env.dns("pod-a", "api.yourdomain.com")["rcode"] == "NOERROR"
    assert env.tcp("pod-a", "198.51.100.30", 443) == "connected"


def test_dns_over_tcp_answers_and_allows(agent_lab):
    env = agent_lab
    env.start_agent()
    answer = env.dns("pod-a", "www.google.com", tcp=True)
    assert [a["data"] for a in answer["answers"]] == [GOOGLE]
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    decision = next(e for e in env.logs() if e.get("event") == "dns.decision")
    assert decision["transport"] == "tcp" and decision["outcome"] == "allowed"


def test_failed_write_gives_servfail_then_the_table_is_rebuilt(agent_lab):
    env = agent_lab
    env.start_agent("--watchdog-interval", "60")
    env.dns("pod-a", "www.google.com")
    env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy"])
    assert env.dns("pod-a", "api.yourdomain.com")["rcode"] == "SERVFAIL"
    wait_for(lambda: env.has_log("enforcer.repaired"), 5, "repair")
    # what was allowed before is allowed again; the rest is closed again
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    env.dns("pod-a", "www.cloudflare.com")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    assert env.dns("pod-a", "api.yourdomain.com")["rcode"] == "NOERROR"
    assert env.tcp("pod-a", "198.51.100.30", 443) == "connected"


def test_failed_write_gives_servfail_over_tcp_too(agent_lab):
    env = agent_lab
    env.start_agent("--watchdog-interval", "60")
    env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy"])
    answer = env.dns("pod-a", "api.yourdomain.com", tcp=True)
    assert answer["rcode"] == "SERVFAIL" and answer["answers"] == []
    wait_for(lambda: env.has_log("enforcer.repaired"), 5, "repair")

    def failed():
        return [e for e in env.logs() if e.get("event") == "dns.decision" and e.get("answer") == "SERVFAIL"]

    wait_for(failed, 3, "the failed decision's line")  # decision lines are flushed twice a second
    assert [(e["transport"], e["qname"]) for e in failed()] == [("tcp", "api.yourdomain.com")]
    assert env.tcp("pod-a", "198.51.100.30", 443) == "timeout"  # the SERVFAILed answer allowed nothing
    answer = env.dns("pod-a", "api.yourdomain.com", tcp=True)
    assert answer["rcode"] == "NOERROR" and env.tcp("pod-a", "198.51.100.30", 443) == "connected"


def test_watchdog_rebuilds_a_deleted_table_without_traffic(agent_lab):
    env = agent_lab
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy"])
    wait_for(lambda: env.has_log("enforcer.repaired"), 3, "watchdog repair")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"


def test_restart_adopts_what_was_allowed(agent_lab):
    env = agent_lab
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    assert env.stop_agent() == 0
    env.start_agent()
    ready = [e for e in env.logs() if e.get("event") == "agent.ready"]
    assert ready[-1]["adopted_elements"] == 1
    # allowed right after the restart, with no new lookup; the rest still closed
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    # the adopted element is known by name: a reload without ports widens it without a lookup
    env.write_policy([article_policy(ports=False), *lab_pods()])
    wait_for(lambda: env.has_log("policy.loaded"), 3, "reload")
    assert env.tcp("pod-a", GOOGLE, 80) == "connected"


def test_noisy_pod_is_refused_beyond_its_rate_and_others_are_served(agent_lab):
    env = agent_lab
    env.start_agent("--client-rate", "50")
    out = env.lab.run("pod-a", env.dnsload_argv(["www.google.com"], rate=400, seconds=1.5), timeout=30)
    counts = json.loads(out.stdout)
    assert counts["failed"] == 0  # refused, answered at once: nothing hangs
    assert counts["not_noerror"] >= counts["sent"] // 2  # most of the 600 are over a 50/s (burst 100) budget
    assert env.dns("pod-b", "www.google.com")["rcode"] == "NOERROR"
