"""A hitless restart: a second agent starts beside the first (SO_REUSEPORT), then the first stops.

While a pod resolves at ~500 qps and holds a TCP connection open: no lookup fails beyond one client
retry, the held connection survives, and what was allowed stays allowed with no new lookup.
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


def test_restart_under_load_loses_nothing(agent_lab):
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    first = env.start_agent()
    env.dns("pod-a", "www.google.com")
    hold = env.lab.popen(
        "pod-a",
        [sys.executable, "-m", "tests.lab.probe", "hold", GOOGLE, "7", "--seconds", "7"],
        stdout=subprocess.PIPE,
    )
    load = env.lab.popen(
        "pod-a",
        env.dnsload_argv(["www.google.com", "www.cloudflare.com"], rate=500, seconds=6),
        stdout=subprocess.PIPE,
    )
    time.sleep(1.5)
    second = env.start_agent()  # binds beside the first one
    assert second is not first
    time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    counts = json.loads(load.communicate(timeout=30)[0])
    held = json.loads(hold.communicate(timeout=30)[0])
    assert counts["sent"] >= 2500
    assert counts["failed"] == 0, counts
    assert counts["not_noerror"] == 0, counts
    assert held["result"] == "held", held
    # allowed right after, with no new lookup; the rest still closed
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    assert env.dns("pod-a", "api.yourdomain.com")["rcode"] == "NOERROR"
    print(f"restart under load: {counts}")
