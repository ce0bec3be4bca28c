"""Element refresh on this kernel, through the running agent (fqdn_policy.enforcer.refresh, docs/kernels.md).

The agent probes at start how an existing element gets a new timeout and says what it chose. Under the
replace strategy (delete and add in one transaction, the only one that works below Linux 6.10) no packet
of a new or an established allowed flow may be dropped while elements are being replaced: with no
refresh slack every repeated answer rewrites the element, so a DNS load replaces it hundreds of times
while new connections are opened back to back and one connection stays open.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.e2e.agentlab import article_policy, lab_pods

pytestmark = pytest.mark.netns

GOOGLE = "198.51.100.10"
RELEASE = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])
UPDATES_IN_PLACE = RELEASE >= (6, 10)
LOOP = ("--timeout", "0.5", "--pause", "0.005")  # new connections back to back; a dropped SYN times out


def ready_line(env):
    return next(e for e in reversed(env.logs()) if e.get("event") == "agent.ready")


def test_the_agent_names_the_refresh_strategy_it_probed(agent_lab):
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    env.start_agent()
    expected = "update" if UPDATES_IN_PLACE else "replace"
    ready = ready_line(env)
    assert ready["element_refresh"] == expected, ready
    assert ready["kernel"] == os.uname().release
    assert env.metric("fqdn_policy_kernel_info", release=os.uname().release, element_refresh=expected) == 1
    # the scratch table the probe used is gone
    assert "fqdn_policy_probe" not in env.nft("list", "tables")


def test_no_packet_is_dropped_while_elements_are_replaced_under_load(agent_lab):
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    env.start_agent("--element-refresh", "replace", "--refresh-slack", "0")
    assert ready_line(env)["element_refresh"] == "replace"
    assert env.dns("pod-a", "www.google.com")["rcode"] == "NOERROR"
    written_before = env.metric("fqdn_policy_set_elements_written_total")
    seconds = 5
    held = env.lab.popen(
        "pod-a",
        [sys.executable, "-m", "tests.lab.probe", "hold", GOOGLE, "7", "--seconds", str(seconds + 1)],  # echo
        stdout=subprocess.PIPE,
    )
    connects = env.lab.popen(
        "pod-a",
        [sys.executable, "-m", "tests.lab.connectloop", GOOGLE, "443", "--seconds", str(seconds), *LOOP],
        stdout=subprocess.PIPE,
    )
    time.sleep(0.2)  # the loops are running before the first replace
    load = env.lab.popen(
        "pod-a", env.dnsload_argv(["www.google.com"], rate=200, seconds=seconds - 1), stdout=subprocess.PIPE
    )
    dns = json.loads(load.communicate(timeout=30)[0])
    counts = json.loads(connects.communicate(timeout=30)[0])
    kept = json.loads(held.communicate(timeout=30)[0])
    replaced = env.metric("fqdn_policy_set_elements_written_total") - written_before
    assert dns["failed"] == 0 and dns["sent"] >= 600, dns
    assert replaced >= 300, replaced  # the element really was replaced again and again meanwhile
    assert counts["connected"] >= 200 and counts["timeout"] == 0 and counts["other"] == 0, counts
    assert kept["result"] == "held", kept
    print(f"replaced {replaced:.0f} times; new connections: {counts}")


@pytest.mark.skipif(UPDATES_IN_PLACE, reason="this kernel updates elements in place")
def test_insisting_on_in_place_updates_where_the_kernel_ignores_them_refuses_the_start(agent_lab):
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    agent = env.start_agent("--element-refresh", "update", wait_ready=False)
    assert agent.wait(timeout=30) != 0
    failed = next(e for e in env.logs() if e.get("event") == "agent.start_failed")
    assert "ignores element updates (Linux 6.10+)" in failed["error"], failed
