"""NfqueueSocket against the running kernel's nfnetlink_queue, in a throw-away network namespace: the
bind and config are accepted, a second socket is told the queue is busy, a verdict for a packet the
kernel does not hold is counted as refused, and the queue is free again once its socket closes.

No packet is queued here (that takes the nft queue statement, which this machine's kernel lacks:
tests/e2e/test_nfqueue.py does it in the VM lane)."""

import json
import os
import shutil

import pytest

from tests.lab.unshared import run_unshared

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a netns"),
]

SCRIPT = """
import json, time
from fqdn_policy.enforcer.kernelprobe import queue_binding
from fqdn_policy.enforcer.nfqueuesocket import NfqueueSocket, QueueBusy
from fqdn_policy.enforcer.nfqueuewire import NF_ACCEPT, Verdict

out = {}
first = NfqueueSocket(300)
first.bind(copy_range=2048, maxlen=64)
with open("/proc/net/netfilter/nfnetlink_queue") as table:
    out["proc"] = [line.split() for line in table]
second = NfqueueSocket(300)
try:
    second.bind()
    out["second"] = "bound"
except QueueBusy as error:
    out["second"] = f"busy: {error}"
first.verdict(4242, NF_ACCEPT)
first.verdicts([Verdict(4243, NF_ACCEPT), Verdict(4244, NF_ACCEPT, 0x4)])
time.sleep(0.1)
out["received"] = len(first.receive())
out["refused"] = first.refused
out["probe_while_held"] = len(queue_binding(lambda q: NfqueueSocket(300)))
first.close()
second.bind()
out["rebound"] = True
second.close()
out["probe"] = len(queue_binding(NfqueueSocket))
print(json.dumps(out))
"""


def test_bind_busy_refused_verdicts_and_release_on_the_running_kernel():
    if not os.path.exists("/proc/net/netfilter/nfnetlink_queue"):
        pytest.skip("this kernel has no nfnetlink_queue loaded or built in")
    result = run_unshared(SCRIPT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    # queue, port id, waiting, copy mode (2: packet), copy range, dropped, user-dropped, last id, 1
    (row,) = out["proc"]
    assert (row[0], row[2], row[3], row[4]) == ("300", "0", "2", "2048"), row
    assert out["second"] == "busy: [Errno 16] NFQUEUE queue 300 is bound by another socket"
    assert out["received"] == 0
    assert out["refused"] == 3  # ENOENT for each id the kernel never queued, the batched two included
    assert out["probe_while_held"] == 0  # busy still says the subsystem is there
    assert out["rebound"] is True
    assert out["probe"] == 0
