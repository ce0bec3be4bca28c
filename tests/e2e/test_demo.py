"""The README's first command: the demo replays the article and every step has its expected verdict."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"

EXPECTED = [
    # (a line of the output, as a regular expression), in order
    r"1\. Staged rollout: --mode audit",
    r"connect www\.cloudflare\.com:443  ->  connected",
    r"WOULD DROP \(audit, accepted\)  default/curl-client -> 198\.51\.100\.20 tcp/443  \[name-not-allowed",
    r"2\. Enforced",
    r"asked www\.google\.com \(A\): allowed by default/allow-out-fqdnnp#egress\[0\] \(www\.google\.com\)",
    r"connect www\.google\.com:443  ->  connected",
    r"connect api\.yourdomain\.com:443  ->  connected",
    r"asked www\.cloudflare\.com \(A\): name-not-allowed",
    r"connect www\.cloudflare\.com:443  ->  timeout after 1\.\d+ s$",
    r"DROPPED  default/curl-client -> 198\.51\.100\.20 tcp/443  \[name-not-allowed: www\.cloudflare\.com",
    r"connect www\.google\.com:80  ->  timeout after 1\.\d+ s$",
    r"DROPPED  default/curl-client -> 198\.51\.100\.10 tcp/80  \[port-not-allowed: www\.google\.com \(allowed on tcp/443\)",
    r"DROPPED  default/curl-client -> 2001:db8:100::20 tcp/443  \[never resolved through the proxy",
    r"other\$ connect www\.cloudflare\.com:443  ->  connected",
    r"3\. The policy re-applied without ports",
    r"policy reloaded \(SIGHUP\)",
    r"connect www\.google\.com:80  ->  connected",
    r"4\. Fast failure",
    r"connect www\.cloudflare\.com:443  ->  refused after 0\.\d+ s$",
    r"REJECTED  default/curl-client -> 198\.51\.100\.20 tcp/443",
    r"every step as expected",
]


def test_demo_replays_the_article():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    done = subprocess.run(
        [sys.executable, str(DEMO), "--plain"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=DEMO.parent.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert not any("\033[" in line for line in lines)  # --plain: no colour codes
    assert not any(line.lstrip().startswith("{") for line in lines)  # readable, not JSON
    position = 0
    for pattern in EXPECTED:
        for offset, line in enumerate(lines[position:]):
            if re.search(pattern, line):
                position += offset + 1
                break
        else:
            raise AssertionError(f"no line matching {pattern!r} after line {position}:\n{done.stdout}")
