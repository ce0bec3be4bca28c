"""NfqueueSocket on a kernel with the nft queue statement: a connection's payload packets queued from
the node's forward hook, read from the queue, and re-run through the chain with a mark that decides.

The chain, first rule first, as issue 20's SNI check will use it (no `bypass`: fail closed):

    meta mark & 0x4 == 0x4 ct mark set ct mark | 0x4 accept    # verified: the flow passes from now on
    meta mark & 0x8 == 0x8 reject with tcp reset                # refused
    ct mark & 0x4 == 0x4 accept
    tcp dport 8443 ct state established queue num 300            # unverified: ask the agent

The verdict giver (tests/lab/queueverdict.py) accepts packets without TCP payload and answers the
first payload packet NF_REPEAT with its mark. Allowed (0x4): the server gets the bytes. Denied (0x8):
the client sees ECONNRESET and the server no bytes.

Needs CONFIG_NFT_QUEUE (module nft_queue), which the machine these tests were written on lacks: there
it skips; it runs in the VM lane (scripts/vmtest linux-image-cloud-amd64 -- -v tests/e2e/test_nfqueue.py).
"""

import json
import os
import subprocess
import time

import pytest

from tests.lab.netlab import Lab
from tests.lab.pyrun import REPO_ROOT, module_argv, module_env
from tests.lab.unshared import run_unshared

pytestmark = pytest.mark.netns

QUEUE, PORT, SERVER = 300, 8443, "198.51.100.10"
ALLOW, DENY = 0x4, 0x8
RULESET = f"""
table inet nfqueue_test {{
    chain forward {{
        type filter hook forward priority 0; policy accept;
        meta mark & {ALLOW:#x} == {ALLOW:#x} ct mark set ct mark | {ALLOW:#x} accept
        meta mark & {DENY:#x} == {DENY:#x} meta l4proto tcp reject with tcp reset
        ct mark & {ALLOW:#x} == {ALLOW:#x} accept
        ip daddr {SERVER} tcp dport {PORT} ct state established queue num {QUEUE}
    }}
}}
"""

PROBE = """
from fqdn_policy.enforcer.kernelfeatures import NFT_QUEUE
from fqdn_policy.enforcer.kernelprobe import missing_features
from fqdn_policy.enforcer.nft import Nft
missing = missing_features(Nft(), "nfqueue_probe", [NFT_QUEUE])
print(missing[0].error if missing else "")
"""


@pytest.fixture(scope="module")
def queue_statement():
    """Skips unless this kernel has the queue statement (probed in a throw-away network namespace)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    result = run_unshared(PROBE)
    assert result.returncode == 0, result.stderr
    if result.stdout.strip():
        pytest.skip(f"no nft queue statement (CONFIG_NFT_QUEUE, module nft_queue): {result.stdout.strip()}")


@pytest.fixture
def lab(queue_statement):
    with Lab() as lab:
        lab.run("node", ["nft", "-f", "-"], input=RULESET)
        yield lab


def _start(lab, ns, module, *args):
    argv = module_argv(module, *(str(a) for a in args))
    proc = lab.popen(ns, argv, stdout=subprocess.PIPE, text=True, env=module_env(), cwd=REPO_ROOT)
    ready = json.loads(proc.stdout.readline() or "{}")  # bound / listening, or the process died
    assert ready.get("event") in ("bound", "listening"), (module, ready, proc.poll())
    return proc


def _lines(proc, timeout=15.0):
    proc.terminate()
    out, _ = proc.communicate(timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _transfer(lab, mark, text):
    """One connection from pod-a through the queue: (client result, verdicts given, server records)."""
    server = _start(lab, "inet", "tests.lab.sendrecord", "serve", SERVER, PORT, "--seconds", 30, "--idle", 2)
    verdicts = _start(lab, "node", "tests.lab.queueverdict", QUEUE, "--mark", hex(mark), "--seconds", 30)
    sent = lab.run(
        "pod-a", module_argv("tests.lab.sendrecord", "send", SERVER, str(PORT), text), env=module_env()
    )
    client = json.loads(sent.stdout)
    time.sleep(3)  # the server's idle timeout: a connection that got no bytes is recorded too
    return client, _lines(verdicts), _lines(server)


def test_an_allowed_flow_is_repeated_with_its_mark_and_the_server_gets_the_bytes(lab):
    client, verdicts, server = _transfer(lab, ALLOW, "GET / HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
    assert client == {"result": "closed"}, (client, verdicts, server)
    repeated = [v for v in verdicts if v["verdict"] == "repeat"]
    assert repeated, verdicts
    assert bytes.fromhex(repeated[0]["tcp_payload"]).startswith(b"GET / HTTP/1.1\r\n"), repeated
    assert all(v["hook"] == 2 for v in verdicts), verdicts  # NF_INET_FORWARD
    assert len(repeated) == 1, verdicts  # after it, the conntrack mark lets the flow's packets through
    assert [s["received"] for s in server] == ["GET / HTTP/1.1\r\nHost: allowed.example\r\n\r\n"], server


def test_a_denied_flow_is_reset_and_the_server_gets_nothing(lab):
    client, verdicts, server = _transfer(lab, DENY, "GET / HTTP/1.1\r\nHost: denied.example\r\n\r\n")
    assert client == {"result": "reset"}, (client, verdicts, server)
    assert any(v["verdict"] == "repeat" for v in verdicts), verdicts
    assert [s["received"] for s in server] in ([], [""]), server


def test_a_queue_nobody_reads_drops_the_flow(lab):
    """No bypass: with no socket bound, the first payload packet is dropped, never let through."""
    server = _start(lab, "inet", "tests.lab.sendrecord", "serve", SERVER, PORT, "--seconds", 30, "--idle", 2)
    argv = module_argv("tests.lab.sendrecord", "send", SERVER, str(PORT), "unverified", "--timeout", "2")
    client = json.loads(lab.run("pod-a", argv, env=module_env()).stdout)
    time.sleep(2.5)
    assert client == {"result": "timeout"}, client
    assert [s["received"] for s in _lines(server)] in ([], [""])
