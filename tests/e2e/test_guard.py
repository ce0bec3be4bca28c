"""Fail-closed: a deleted, flushed or emptied main table never gives a selected pod open egress.

The guard table (fqdn_policy/enforcer/guard.py) drops new flows of enforced pods that the main table did not judge.
The gap is held open on purpose by stopping the agent (SIGSTOP) before deleting the table, so the probes
run while nothing can repair it; then the agent continues and rebuilds. A control run without the guard
shows the same probe does see open egress, so the check can fail.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.agentlab import AGENT, article_policy, lab_pods, wait_for

pytestmark = pytest.mark.netns

GOOGLE, CLOUDFLARE = "198.51.100.10", "198.51.100.20"
GOOGLE_V6, CLOUDFLARE_V6 = "2001:db8:100::10", "2001:db8:100::20"


def connect_loop(env, pod, host, port, seconds, timeout=0.2):
    argv = [sys.executable, "-m", "tests.lab.connectloop", host, str(port), "--seconds", str(seconds)]
    argv += ["--timeout", str(timeout), "--pause", "0.01"]
    return env.lab.popen(pod, argv, stdout=subprocess.PIPE)


def hold(env, host, seconds):
    argv = [sys.executable, "-m", "tests.lab.probe", "hold", host, "7", "--seconds", str(seconds)]
    return env.lab.popen("pod-a", argv, stdout=subprocess.PIPE)


def guard_drops(env):
    out = json.loads(env.nft("-j", "list", "counter", "inet", "fqdn_policy_guard", "dropped"))
    return next(i["counter"]["packets"] for i in out["nftables"] if "counter" in i)


@pytest.fixture
def allowed_env(agent_lab):
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    return env


def test_deleted_table_keeps_selected_pods_closed_until_rebuilt(allowed_env):
    env = allowed_env
    agent = env.start_agent()
    env.dns("pod-a", "www.google.com")
    env.dns("pod-a", "www.google.com", "AAAA")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    held = hold(env, GOOGLE, 6)
    time.sleep(0.5)
    agent.send_signal(signal.SIGSTOP)  # nothing can repair the table while the probes run
    try:
        env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy"])
        for host in (CLOUDFLARE, CLOUDFLARE_V6, GOOGLE, GOOGLE_V6):
            assert env.tcp("pod-a", host, 443, timeout=0.5) == "timeout", host  # closed, even if allowed
        assert env.tcp("pod-b", CLOUDFLARE, 443) == "connected"  # unselected pods are untouched
        assert guard_drops(env) >= 4
    finally:
        agent.send_signal(signal.SIGCONT)
    wait_for(lambda: env.has_log("enforcer.repaired"), 5, "repair after the deletion")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", GOOGLE_V6, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    # the connection opened before the deletion lived through it (both tables accept established flows)
    assert json.loads(held.communicate(timeout=20)[0])["result"] == "held"


def test_without_the_guard_a_deleted_table_opens_egress(allowed_env):
    """The control: `--guard-mark 0` is what the guard prevents, and the probe above would see it."""
    env = allowed_env
    agent = env.start_agent("--guard-mark", "0")
    assert "fqdn_policy_guard" not in env.nft("list", "tables")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    agent.send_signal(signal.SIGSTOP)
    try:
        env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy"])
        assert env.tcp("pod-a", CLOUDFLARE, 443) == "connected"
    finally:
        agent.send_signal(signal.SIGCONT)
    wait_for(lambda: env.has_log("enforcer.repaired"), 5, "repair after the deletion")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"


def test_table_deleted_under_dns_load_no_new_flow_gets_through(allowed_env):
    env = allowed_env
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    load = env.lab.popen(
        "pod-a",
        env.dnsload_argv(["www.google.com", "www.cloudflare.com", "api.yourdomain.com"], rate=200, seconds=5),
        stdout=subprocess.PIPE,
    )
    # A SYN every ~60 ms, so each deletion's gap (~0.1 s until the repair) meets at least one.
    denied = connect_loop(env, "pod-a", CLOUDFLARE, 443, seconds=6, timeout=0.05)
    allowed = connect_loop(env, "pod-a", GOOGLE, 443, seconds=6)
    time.sleep(1.5)
    repaired_in = []
    for n in range(1, 4):  # three deletions, three gaps
        deleted_at = time.monotonic()
        env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy"])
        wait_for(lambda n=n: env.count_log("enforcer.repaired") >= n, 5, "repair under load")
        repaired_in.append(round(time.monotonic() - deleted_at, 2))
        time.sleep(0.7)
    counts = json.loads(load.communicate(timeout=30)[0])
    denied_counts = json.loads(denied.communicate(timeout=30)[0])
    allowed_counts = json.loads(allowed.communicate(timeout=30)[0])
    print(
        f"repaired in {repaired_in} s; guard drops {guard_drops(env)}; load {counts}; denied {denied_counts}; allowed {allowed_counts}"
    )
    assert denied_counts["attempts"] >= 50 and denied_counts["connected"] == 0, denied_counts
    # the allowed destination works before and after the gap (closed at most while the table was gone)
    assert allowed_counts["first_connected"] is not None and allowed_counts["first_connected"] < 1.5
    assert allowed_counts["last_connected"] is not None and allowed_counts["last_connected"] > 5.0
    assert counts["failed"] == 0, counts  # lookups answered throughout (SERVFAIL while a write failed)
    assert env.dns("pod-a", "api.yourdomain.com")["rcode"] == "NOERROR"
    assert env.tcp("pod-a", "198.51.100.30", 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"


def test_flushed_forward_chain_is_caught_by_the_guard_and_repaired(allowed_env):
    """A flushed chain leaves the table in place (the presence check passes); the guard's drop counter
    tells the watchdog that the main table stopped judging packets."""
    env = allowed_env
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    env.lab.run("node", ["nft", "flush", "chain", "inet", "fqdn_policy", "forward"])
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"  # the guard drops it, and counts it
    wait_for(
        lambda: env.has_log(
            "enforcer.repairing", reason="guard dropped packets the main table did not judge"
        ),
        5,
        "repair triggered by the guard's counter",
    )
    wait_for(lambda: env.has_log("enforcer.repaired"), 5, "repair")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"


def test_deleted_guard_table_main_still_enforces_and_guard_is_rebuilt(allowed_env):
    env = allowed_env
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy_guard"])
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    wait_for(lambda: env.has_log("enforcer.repairing", reason="guard table or chain missing"), 5, "repair")
    wait_for(lambda: "fqdn_policy_guard" in env.nft("list", "tables"), 5, "guard rebuilt")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"


def test_teardown_removes_both_tables(allowed_env):
    env = allowed_env
    env.start_agent()
    assert env.stop_agent() == 0
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"  # stopped: still closed
    out = env.lab.run("node", [AGENT, "teardown"]).stdout
    assert "deleted table inet fqdn_policy\n" in out and "deleted table inet fqdn_policy_guard" in out
    assert "fqdn_policy" not in env.nft("list", "tables")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "connected"  # lifting enforcement lifts all of it


def test_audit_mode_has_no_guard(allowed_env):
    """Audit mode breaks no traffic, so a deleted table must not either: no guard, no mark."""
    env = allowed_env
    env.start_agent()
    assert "fqdn_policy_guard" in env.nft("list", "tables")
    assert env.stop_agent() == 0
    env.start_agent("--mode", "audit")
    assert "fqdn_policy_guard" not in env.nft("list", "tables")  # the one left by the enforcing run is gone
    assert "mark" not in env.nft("list", "chain", "inet", "fqdn_policy", "forward")
