"""A name resolved continuously for three TTLs never goes dark (issue 16).

Each answer must keep the pod's element alive in the kernel: below Linux 6.10 re-adding an existing
element is silently a no-op, so an agent that refreshes by re-adding lets it expire at its first
timeout while the pod keeps resolving, and new connections to a freshly resolved address are dropped.
The lane that runs this on Debian's kernels: scripts/vmtest (docs/kernels.md).
"""

import json
import sys

import pytest

from tests.e2e.agentlab import PROXY_V4, PROXY_V6, ZONE
from tests.lab.slowdown import patience

pytestmark = pytest.mark.netns

TTL = 4  # seconds; short, so three TTLs fit in a test, and above the agent's lowered --min-ttl
NAME = "short.yourdomain.com"  # allowed by the article's policy (*.yourdomain.com, TCP 443)
ADDRESS = {"A": "198.51.100.30", "AAAA": "2001:db8:100::30"}
SERVER = {"A": PROXY_V4, "AAAA": PROXY_V6}


@pytest.mark.parametrize("qtype", ["A", "AAAA"])
def test_name_resolved_every_second_for_three_ttls_never_goes_dark(agent_lab, qtype):
    env = agent_lab
    env.internet.set_zone({**ZONE, NAME: {"A": [ADDRESS["A"]], "AAAA": [ADDRESS["AAAA"]], "ttl": TTL}})
    env.start_agent("--min-ttl", "1")
    seconds = 3 * TTL + 1.5
    argv = [sys.executable, "-m", "tests.lab.resolveloop", NAME, qtype, "443"]
    argv += ["--server", SERVER[qtype], "--seconds", str(seconds), "--interval", "1"]
    # The answer may take the lab's patience (a slow guest); each connect gets one SYN's time, 1 s.
    argv += ["--dns-timeout", str(patience(2)), "--connect-timeout", "1"]
    # Four connects a second: an element that lapses at its first timeout (4.4 s with the 10 % slack)
    # and comes back only with the next lookup's write leaves a gap of ~0.6 s; connects only right
    # after each lookup would never land in it.
    argv += ["--connects", "4"]
    rounds = json.loads(env.lab.run("pod-a", argv, timeout=seconds + 60).stdout)["rounds"]

    # The loop really spanned more than three TTLs, a lookup a second (none skipped).
    assert len(rounds) >= 3 * TTL + 1 and rounds[-1]["t"] > 3 * TTL, rounds
    assert all(r["rcode"] == "NOERROR" and r["addresses"] == [ADDRESS[qtype]] for r in rounds), rounds
    connects = [c for r in rounds for c in r["connects"]]
    assert len(connects) == 4 * len(rounds) and all(c["to"] == ADDRESS[qtype] for c in connects), rounds
    dark = [c for c in connects if c["result"] != "connected"]
    assert not dark, f"connects to a freshly resolved address failed at {[c['t'] for c in dark]} s: {dark}"
    # What the agent promised matches: each answer was allowed for the name's TTL.
    allowed = [e for e in env.logs() if e.get("event") == "dns.decision" and e.get("qname") == NAME]
    assert allowed and all(e["outcome"] == "allowed" for e in allowed), env.agent_log.read_text()
