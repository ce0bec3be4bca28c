"""An agent on a kernel that lacks a feature its tables use refuses to start and names the feature.

Only inside the VM lane's guest (scripts/vmtest sets FQDN_POLICY_VM_GUEST=1): making a module
unavailable changes the whole kernel, which must never happen on the machine's own. The guest's Debian
kernel ships `reject` for inet tables as a module (nft_reject_inet); it is unloaded and its loading
refused through modprobe (`install ... /bin/false`), as on a node whose kernel was built without it.
"""

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.agentlab import article_policy, lab_pods

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.environ.get("FQDN_POLICY_VM_GUEST") != "1", reason="changes the kernel: VM lane only"
    ),
]

MODULE = "nft_reject_inet"
DENY = Path("/etc/modprobe.d/fqdn-policy-test-deny.conf")


@pytest.fixture
def without_reject():
    if not Path(f"/lib/modules/{os.uname().release}").exists():
        pytest.skip("no modules for this kernel")
    found = subprocess.run(["modinfo", MODULE], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"{MODULE} is built in or absent: it cannot be taken away here")
    DENY.write_text(f"install {MODULE} /bin/false\n")
    subprocess.run(["rmmod", MODULE], capture_output=True)  # loaded by an earlier test: unused by now
    try:
        yield
    finally:
        DENY.unlink()


def test_a_missing_kernel_feature_refuses_the_start_and_is_named(agent_lab, without_reject):
    env = agent_lab
    env.write_policy([article_policy(ports=False), *lab_pods()])
    agent = env.start_agent(wait_ready=False)
    assert agent.wait(timeout=60) == 3
    failed = next(e for e in env.logs() if e.get("event") == "agent.start_failed")
    assert "lacks what fqdn-policy needs (Linux 5.6 or later" in failed["error"], failed
    assert "reject with a TCP reset or ICMP administratively prohibited (Linux 3.14+" in failed["error"], (
        failed
    )
    assert not env.has_log("agent.ready")
    # nothing was half-applied: neither the agent's table nor the probe's scratch table is there
    assert "fqdn_policy" not in env.nft("list", "tables")
    # and in audit mode, which rejects nothing, the same kernel is enough
    agent = env.start_agent("--mode", "audit")
    assert agent.poll() is None
