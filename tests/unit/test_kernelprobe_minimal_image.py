"""The start-up probe and the ruleset on a system without /etc/protocols (netbase), as in minimal
container images: the probe must not refuse a kernel feature for a missing protocol-name file (it
once did, for `reject`, in the agent's own image). /etc/protocols is hidden in a private mount
namespace, in a throw-away network namespace."""

import os
import shutil

import pytest

from tests.lab.unshared import run_unshared

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for namespaces"),
]

SCRIPT = """
import sys
from fqdn_policy.enforcer import guard
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.elementsocket import ElementSocket
from fqdn_policy.enforcer.kernelfeatures import Needs
from fqdn_policy.enforcer.kernelprobe import probe_kernel
from fqdn_policy.enforcer.nft import Nft
nft = Nft()
print(probe_kernel(nft, ElementSocket(), "fqdn_policy", Needs(dns_redirect=True)).refresh.value)
nft.run(ruleset.base_ruleset("fqdn_policy", ruleset.Denial(), 2) + guard.guard_ruleset("fqdn_policy_guard", 2))
print("installed")
"""


def test_probe_and_ruleset_need_no_protocol_names_file(tmp_path):
    empty = tmp_path / "protocols"
    empty.write_text("")
    done = run_unshared(SCRIPT, mounts={str(empty): "/etc/protocols"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "installed", done.stdout
