"""Hostile DNS-over-TCP clients against the real agent: each is bounded, and other clients are served."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

SERVER = "10.244.1.1:53"


def abuse(env, pod, *argv, timeout=60):
    out = env.lab.run(
        pod, [sys.executable, "-m", "tests.lab.tcpabuse", *argv, "--server", SERVER], timeout=timeout
    )
    return json.loads(out.stdout.splitlines()[-1])


def rss_kb(pid):
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1])


def test_huge_length_prefix_is_closed_at_once_and_buffers_nothing(agent_lab):
    env = agent_lab
    agent = env.start_agent("--tcp-idle-timeout", "10")
    env.dns("pod-a", "www.google.com", tcp=True)  # warm: the TCP path's code and objects exist
    before = rss_kb(agent.pid)
    out = abuse(env, "pod-b", "huge", "--count", "200")
    assert out["closed"] == 200, out
    assert out["max_seconds"] < 1.0, out  # closed on the prefix, not after the 10 s idle timeout
    assert rss_kb(agent.pid) - before < 2048  # no 64 KiB buffer per connection (200 would be 12.5 MiB)
    assert env.dns("pod-a", "www.google.com", tcp=True)["rcode"] == "NOERROR"


def test_trickled_query_is_closed_after_the_idle_timeout(agent_lab):
    env = agent_lab
    env.start_agent("--tcp-idle-timeout", "2")
    out = abuse(env, "pod-b", "trickle", "--interval", "0.4")
    assert out["closed_by_server"] and out["bytes_sent"] < out["message_bytes"], out
    assert 1.5 < out["seconds"] < 4.0, out  # the 2 s bound covers the whole query, however it trickles
    assert env.dns("pod-b", "www.google.com", tcp=True)["rcode"] == "NOERROR"


def test_thousands_of_connections_hit_the_cap_and_others_are_still_served(agent_lab):
    env = agent_lab
    env.start_agent()  # the default cap: 1,024 connections per listen address
    flood = env.lab.popen(
        "pod-b",
        [sys.executable, "-m", "tests.lab.tcpabuse", "flood", "--server", SERVER, "--count", "1500",
         "--hold", "12", "--settle", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        counted = json.loads(flood.stdout.readline())
        assert counted["opened"] + counted["connect_failed"] == 1500, counted
        assert counted["kept"] == 1024, counted  # the cap holds, exactly
        assert counted["closed_at_once"] == counted["opened"] - 1024, counted
        # others: UDP answered; TCP refused at once while the cap is full (the client falls back)
        assert env.dns("pod-a", "www.google.com")["rcode"] == "NOERROR"
        assert env.dns("pod-a", "www.google.com", tcp=True)["result"] != "answered"
        released = json.loads(flood.stdout.readline())
        assert released == {"released": counted["opened"]}
    finally:
        flood.wait(timeout=30)
    # once the flood lets go, TCP is served again
    assert env.dns("pod-a", "api.yourdomain.com", tcp=True)["rcode"] == "NOERROR"
