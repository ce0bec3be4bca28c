"""Drop attribution, audit mode and reject mode, end to end (docs/drops.md)."""

import signal
import sys
import time

import pytest

from tests.e2e.agentlab import article_policy, lab_pods, wait_for

pytestmark = pytest.mark.netns

GOOGLE, CLOUDFLARE, YOURDOMAIN = "198.51.100.10", "198.51.100.20", "198.51.100.30"
GOOGLE_V6 = "2001:db8:100::10"
POD = "default/curl-client"


def lines(env, event, destination=None, port=None):
    return [
        e
        for e in env.logs()
        if e.get("event") == event
        and (destination is None or e.get("destination") == destination)
        and (port is None or e.get("port") == port)
    ]


def one_line(env, event, destination, port):
    """Waits for the line, then a little longer: a second line for the same connect would be a bug."""
    wait_for(lambda: lines(env, event, destination, port), 3, f"{event} to {destination}:{port}")
    env.tcp("pod-b", GOOGLE, 443)  # a round trip's worth of time for a stray second line
    found = lines(env, event, destination, port)
    assert len(found) == 1, found
    return found[0]


def test_dropped_connects_name_pod_destination_and_names(agent_lab):
    env = agent_lab
    env.start_agent()

    # Resolved, but the name is not allowed.
    env.dns("pod-a", "www.cloudflare.com")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    line = one_line(env, "egress.dropped", CLOUDFLARE, 443)
    assert line["pod"] == POD and line["source"] == "10.244.1.10"
    assert line["protocol"] == "tcp" and line["verdict"] == "drop"
    assert line["reason"] == "name-not-allowed"
    assert line["names"] == [{"name": "www.cloudflare.com", "allowed": False}]

    # Allowed name, wrong port: the line says which name and what it allows.
    env.dns("pod-a", "www.google.com")
    assert env.tcp("pod-a", GOOGLE, 80) == "timeout"
    line = one_line(env, "egress.dropped", GOOGLE, 80)
    assert line["reason"] == "port-not-allowed"
    [name] = line["names"]
    assert name["name"] == "www.google.com" and name["allowed"] and name["grants"] == ["tcp/443"]
    assert 290 <= name["expires_in_s"] <= 300

    # IPv6 too.
    env.dns("pod-a", "www.google.com", "AAAA")
    assert env.tcp("pod-a", GOOGLE_V6, 80) == "timeout"
    line = one_line(env, "egress.dropped", GOOGLE_V6, 80)
    assert line["source"] == "2001:db8:244::10" and line["reason"] == "port-not-allowed"

    # A hard-coded address: never looked up.
    assert env.tcp("pod-a", YOURDOMAIN, 443) == "timeout"
    line = one_line(env, "egress.dropped", YOURDOMAIN, 443)
    assert line["reason"] == "never-resolved" and line["names"] == []
    assert "never resolved through the proxy" in line["explanation"]

    # The unselected pod's traffic is never logged; allowed traffic neither.
    assert env.tcp("pod-b", CLOUDFLARE, 443) == "connected"
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    # Nothing else: neighbour discovery flooded across the bridge is link-local and accepted.
    dropped = [(e["destination"], e["port"]) for e in lines(env, "egress.dropped")]
    assert len(dropped) == 4, dropped
    assert env.has_log("drops.reading", nflog_group=4053)


def test_audit_mode_accepts_and_logs_would_drop(agent_lab):
    env = agent_lab
    env.start_agent("--mode", "audit")
    env.dns("pod-a", "www.google.com")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"  # allowed: no line
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "connected"  # would be dropped: accepted, logged
    line = one_line(env, "egress.would_drop", CLOUDFLARE, 443)
    assert line["pod"] == POD and line["verdict"] == "accept (audit)"
    assert line["reason"] == "never-resolved"
    assert not lines(env, "egress.dropped")
    assert lines(env, "egress.would_drop", GOOGLE) == []

    # Back to enforce by restart: the sets are adopted, the verdict swapped.
    assert env.stop_agent() == 0
    env.start_agent()
    assert env.has_log("agent.ready", mode="enforce")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"  # adopted, no new lookup
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    one_line(env, "egress.dropped", CLOUDFLARE, 443)


def test_reject_flag_fails_fast(agent_lab):
    env = agent_lab
    env.start_agent("--reject")
    result = env.probe("pod-a", "tcp", CLOUDFLARE, "443", "--timeout", "3")
    assert result["result"] == "refused" and result["elapsed_ms"] < 1000, result
    result = env.probe("pod-a", "udp", CLOUDFLARE, "5000", "--timeout", "3")
    assert result["result"] == "unreachable" and result["elapsed_ms"] < 1000, result
    line = one_line(env, "egress.dropped", CLOUDFLARE, 443)
    assert line["verdict"] == "reject"
    env.dns("pod-a", "www.google.com")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"


def test_reject_annotation_per_policy(agent_lab):
    env = agent_lab
    env.start_agent()
    assert env.tcp("pod-a", CLOUDFLARE, 443, timeout=1.0) == "timeout"  # drop by default
    policy = article_policy()
    policy["metadata"]["annotations"] = {"fqdn.policy.dev/on-deny": "reject"}
    env.write_policy([policy, *lab_pods()])
    env.agent.send_signal(signal.SIGHUP)
    wait_for(lambda: env.has_log("policy.loaded"), 5, "policy reload")
    result = env.probe("pod-a", "tcp", CLOUDFLARE, "443", "--timeout", "3")
    assert result["result"] == "refused" and result["elapsed_ms"] < 1000, result
    wait_for(lambda: len(lines(env, "egress.dropped", CLOUDFLARE, 443)) == 2, 3, "the second drop line")
    assert [e["verdict"] for e in lines(env, "egress.dropped", CLOUDFLARE, 443)] == ["drop", "reject"]
    # Annotation removed again: back to the silent drop.
    env.write_policy([article_policy(), *lab_pods()])
    env.agent.send_signal(signal.SIGHUP)
    wait_for(lambda: env.count_log("policy.loaded") == 2, 5, "second reload")
    assert env.tcp("pod-a", CLOUDFLARE, 443, timeout=1.0) == "timeout"


def test_overlapping_agents_hand_over_the_nflog_group(agent_lab):
    """The group is bound by one socket per namespace: the new agent waits for the old one to go."""
    env = agent_lab
    first = env.start_agent()
    second = env.start_agent()
    assert env.count_log("drops.group_busy") == 1
    assert env.count_log("drops.reading") == 1
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    wait_for(lambda: env.count_log("drops.reading") == 2, 3, "the second agent to take the group")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    one_line(env, "egress.dropped", CLOUDFLARE, 443)
    assert second.poll() is None


FLOOD = """
import socket
for _ in range({count}):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a new source port each: a new flow
        s.sendto(b"x", ("198.51.100.20", 5000))
"""


def test_beyond_the_log_rate_drops_are_counted_not_logged(agent_lab):
    """Every denied packet is either one egress.dropped line or counted in an egress.unlogged line."""
    env = agent_lab
    env.start_agent("--drop-log-rate", "2")
    started = time.monotonic()
    env.lab.run("pod-a", [sys.executable, "-c", FLOOD.format(count=200)])
    flood_seconds = time.monotonic() - started  # an upper bound: includes starting the interpreter

    def accounted():
        logged = len(lines(env, "egress.dropped", CLOUDFLARE, 5000))
        return logged, sum(e["packets"] for e in lines(env, "egress.unlogged"))

    # The counter is polled every 5 s; a poll during the flood reports part of it, the next the rest.
    wait_for(lambda: sum(accounted()) >= 200, 11, "every packet logged or counted")
    logged, unlogged = accounted()
    # At most the burst (4) plus what the bucket refilled (2/s) while the flood lasted.
    assert 1 <= logged <= 4 + 2 * flood_seconds + 1, (logged, flood_seconds)
    assert logged + unlogged == 200, (logged, unlogged)


def test_an_address_used_after_its_allowance_expired_says_so(agent_lab):
    env = agent_lab
    env.start_agent("--min-ttl", "1", "--max-ttl", "1")
    env.dns("pod-a", "www.google.com")
    time.sleep(1.5)
    assert env.tcp("pod-a", GOOGLE, 443) == "timeout"
    line = one_line(env, "egress.dropped", GOOGLE, 443)
    assert line["reason"] == "expired"
    [name] = line["names"]
    assert name["name"] == "www.google.com" and name["expired_s_ago"] >= 0
