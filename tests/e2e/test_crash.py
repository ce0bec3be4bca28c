"""A crash (SIGKILL) under a supervisor: the restarted agent needs no cleanup; and a SIGTERM stop that
leaves enforced pods closed.

The test is the supervisor (deploy/systemd/fqdn-policy.service does the same with Restart=always,
RestartSec=1): it kills the agent with SIGKILL while a pod resolves and holds a connection, waits the
unit's RestartSec, and starts it again. Checked: while it is down the tables keep enforcing (allowed
stays allowed, the rest closed); after the restart the tables are adopted (no duplicate, no flush),
allowed destinations are allowed with no new lookup, DNS is served again, the held connection lived.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.agentlab import article_policy, lab_pods

pytestmark = pytest.mark.netns

GOOGLE, CLOUDFLARE = "198.51.100.10", "198.51.100.20"
RESTART_SEC = 1.0  # deploy/systemd/fqdn-policy.service


def test_sigkill_then_restart_needs_no_cleanup(agent_lab):
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    agent = env.start_agent()
    env.dns("pod-a", "www.google.com")
    env.dns("pod-a", "www.google.com", "AAAA")
    ruleset_before = env.nft("list", "tables")
    hold = env.lab.popen(
        "pod-a",
        [sys.executable, "-m", "tests.lab.probe", "hold", GOOGLE, "7", "--seconds", "6"],
        stdout=subprocess.PIPE,
    )
    load = env.lab.popen(
        "pod-a", env.dnsload_argv(["www.google.com"], rate=100, seconds=5), stdout=subprocess.PIPE
    )
    time.sleep(1.0)
    agent.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert agent.wait(timeout=5) == -signal.SIGKILL
    # down: no drain, no cleanup ran, and still nothing opened or closed by it
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    time.sleep(max(0.0, RESTART_SEC - (time.monotonic() - killed_at)))
    env.start_agent()
    down_for = time.monotonic() - killed_at
    ready = [e for e in env.logs() if e.get("event") == "agent.ready"][-1]
    assert ready["adopted_elements"] == 2  # the A and the AAAA element, with their names
    assert not env.has_log("agent.start_failed")
    assert env.nft("list", "tables") == ruleset_before  # same tables, nothing left over or added
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"  # no new lookup needed
    assert env.tcp("pod-a", "2001:db8:100::10", 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    assert env.dns("pod-a", "api.yourdomain.com")["rcode"] == "NOERROR"
    assert env.tcp("pod-a", "198.51.100.30", 443) == "connected"
    assert json.loads(hold.communicate(timeout=20)[0])["result"] == "held"
    counts = json.loads(load.communicate(timeout=20)[0])
    print(f"down {down_for:.2f} s (kill to ready); load while it happened: {counts}")
    assert counts["first_try"] + counts["retried_ok"] > 0 and counts["not_noerror"] == 0


def test_sigterm_leaves_new_flows_of_enforced_pods_closed(agent_lab):
    """A stopped agent (SIGTERM: a node drain, `systemctl stop`, a rolling update) leaves its tables:
    what was allowed stays allowed, and every other new flow of an enforced pod stays dropped,
    including DNS sent straight to the upstream around the stopped proxy."""
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    env.dns("pod-a", "www.google.com", "AAAA")
    tables_before = env.nft("list", "tables")
    hold = env.lab.popen(
        "pod-a",
        [sys.executable, "-m", "tests.lab.probe", "hold", GOOGLE, "7", "--seconds", "4"],
        stdout=subprocess.PIPE,
    )
    time.sleep(0.5)
    assert env.stop_agent(signal.SIGTERM) == 0
    assert env.has_log("agent.stopped")
    assert env.nft("list", "tables") == tables_before  # nothing deleted or flushed on the way out
    for host in (CLOUDFLARE, "2001:db8:100::20", "198.51.100.30"):
        assert env.tcp("pod-a", host, 443, timeout=0.5) == "timeout", host  # new flows: closed
    direct = env.dns("pod-a", "www.cloudflare.com", server="198.51.100.53:53")
    assert direct["result"] == "timeout" and direct["answers"] == []  # no way around the stopped proxy
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"  # allowed before the stop: a new flow too
    assert env.tcp("pod-a", "2001:db8:100::10", 443) == "connected"
    assert env.tcp("pod-b", CLOUDFLARE, 443) == "connected"  # a pod no policy selects: untouched
    assert env.dns("pod-b", "www.cloudflare.com", server="198.51.100.53:53")["rcode"] == "NOERROR"
    assert json.loads(hold.communicate(timeout=20)[0])["result"] == "held"  # established: lived on
