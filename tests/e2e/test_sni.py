"""verify-sni end to end (docs/sni.md): two names on one address, as a CDN serves them; a pod allowed
one of them may connect presenting it and is reset presenting the other, before the server sees a byte.

Real clients (Python's ssl through tests.lab.tlsclient, and curl --resolve where installed) against
tests.lab.tlsserve in `inet`, which records per connection how many bytes reached it. The datapath
needs the kernel's nft queue statement (CONFIG_NFT_QUEUE, module nft_queue), which the machine these
tests were written on lacks: those tests skip there and run in the VM lane
(scripts/vmtest linux-image-cloud-amd64 -- -v tests/e2e/test_sni.py). The tests of what happens without
it run where it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.agentlab import AgentLab, lab_pods, wait_for
from tests.e2e.test_nfqueue import PROBE
from tests.lab.netlab import Lab
from tests.lab.pyrun import REPO_ROOT, module_env
from tests.lab.slowdown import patience
from tests.lab.tlsclient import CA
from tests.lab.unshared import run_unshared
from tests.lab.upstream import FakeInternet

pytestmark = pytest.mark.netns

CDN, CDN_V6, PLAIN = "198.51.100.10", "2001:db8:100::10", "198.51.100.20"
ZONE = {
    "good.example": {"A": [CDN], "AAAA": [CDN_V6], "ttl": 300},
    "other.example": {"A": [CDN], "AAAA": [CDN_V6], "ttl": 300},
    "plain.example": {"A": [PLAIN], "AAAA": ["2001:db8:100::20"], "ttl": 300},
}
POD = "default/curl-client"


def _policy(name: str, annotated: bool, rule: dict) -> dict:
    meta: dict = {"name": name, "namespace": "default"}
    if annotated:
        meta["annotations"] = {"fqdn.policy.dev/verify-sni": "true"}
    return {
        "apiVersion": "networking.gke.io/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "metadata": meta,
        "spec": {"podSelector": {"matchLabels": {"app": "curl-client"}}, "egress": [rule]},
    }


def policies(annotated: bool = True) -> list[dict]:
    """A verifying policy for the CDN's name (TLS on 443, HTTP on 80), and a plain one for another host."""
    ports = [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}]
    return [
        _policy("cdn", annotated, {"matches": [{"name": "good.example"}], "ports": ports}),
        _policy(
            "plain",
            False,
            {"matches": [{"name": "plain.example"}], "ports": [{"protocol": "TCP", "port": 8080}]},
        ),
    ]


def _can_queue() -> str:
    """'' when this kernel has the nft queue statement, else why not (probed in a throw-away namespace)."""
    result = run_unshared(PROBE)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def missing_queue():
    import os

    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    return _can_queue()


@pytest.fixture
def queue_statement(missing_queue):
    if missing_queue:
        pytest.skip(f"no nft queue statement (CONFIG_NFT_QUEUE, module nft_queue): {missing_queue}")


class SniLab(AgentLab):
    def __init__(self, lab: Lab, workdir: Path) -> None:
        super().__init__(lab, workdir, ZONE)
        # the CDN's ports are tests.lab.tlsserve's; the banner service answers on 8080 only
        self.internet = FakeInternet(lab, workdir, ZONE, tcp_ports=(8080,), udp_ports=())
        self.events_path = workdir / "server-events.jsonl"
        ready = workdir / "server-ready.json"
        argv = [sys.executable, "-m", "tests.lab.tlsserve", "--listen", CDN, "--listen", CDN_V6]
        self.server = lab.popen(
            "inet", [*argv, "--events", str(self.events_path), "--ready-file", str(ready)]
        )
        wait_for(ready.exists, patience(10), "the CDN server")

    def connect(self, pod: str, name: str, *args: str, address: str = CDN, port: int = 443) -> dict:
        argv = [sys.executable, "-m", "tests.lab.tlsclient", address, str(port), "--name", name, *args]
        return json.loads(self.lab.run(pod, argv, timeout=patience(20)).stdout)

    def server_events(self, count: int) -> list[dict]:
        """The server's first `count` connection lines, once it has written them."""

        def enough() -> bool:
            return self.events_path.exists() and len(self.events_path.read_text().splitlines()) >= count

        wait_for(enough, patience(10), f"{count} server connection lines")
        return [json.loads(line) for line in self.events_path.read_text().splitlines()]

    def denied(self) -> list[dict]:
        return [e for e in self.logs() if e.get("event") in ("egress.sni_denied", "egress.would_sni_deny")]


@pytest.fixture
def sni_lab(tmp_path, missing_queue):
    with Lab() as lab:
        env = SniLab(lab, tmp_path)
        env.write_policy([*policies(), *lab_pods()])
        with env.internet:
            yield env


@pytest.mark.parametrize("address, qtype", [(CDN, "A"), (CDN_V6, "AAAA")])
def test_the_allowed_name_completes_and_another_is_reset_before_the_server_sees_a_byte(
    sni_lab, queue_statement, address, qtype
):
    env = sni_lab
    env.start_agent()
    assert env.has_log("agent.ready", verify_sni="queue 4054")
    env.dns("pod-a", "good.example", qtype)
    assert env.connect("pod-a", "good.example", address=address) == {
        "result": "ok",
        "body": "hello good.example",
    }
    assert env.connect("pod-a", "other.example", address=address)["result"] == "reset"
    allowed, denied = env.server_events(2)
    assert allowed["sni"] == "good.example" and allowed["handshake"]
    assert denied["bytes_before"] == 0 and "sni" not in denied  # the ClientHello never reached it
    (line,) = env.denied()
    assert line["event"] == "egress.sni_denied" and line["pod"] == POD
    assert (line["destination"], line["port"], line["kind"]) == (address, 443, "tls")
    assert line["presented"] == "other.example" and line["resolved"] == ["good.example"]
    assert line["verdict"] == "reset"
    assert env.metric("fqdn_policy_sni_connections_total", pod=POD, verdict="denied") == 1
    assert env.metric("fqdn_policy_sni_connections_total", pod=POD, verdict="allowed") == 1


def test_http_host_on_port_80_both_ways(sni_lab, queue_statement):
    env = sni_lab
    env.start_agent()
    env.dns("pod-a", "good.example")
    assert env.connect("pod-a", "good.example", "--http", port=80)["body"] == "hello good.example"
    assert env.connect("pod-a", "other.example", "--http", port=80)["result"] == "reset"
    assert [e["bytes_before"] > 0 for e in env.server_events(2)] == [True, False]
    (line,) = env.denied()
    assert (line["kind"], line["presented"], line["port"]) == ("http", "other.example", 80)


def test_a_client_hello_without_server_name_is_reset(sni_lab, queue_statement):
    env = sni_lab
    env.start_agent()
    env.dns("pod-a", "good.example")
    assert env.connect("pod-a", "good.example", "--no-sni")["result"] == "reset"
    (line,) = env.denied()
    assert line["presented"] is None and "server_name" in line["reason"]
    assert env.server_events(1)[0]["bytes_before"] == 0


@pytest.mark.parametrize("split", [20, 300])
def test_a_client_hello_split_across_segments_is_reassembled(sni_lab, queue_statement, split):
    env = sni_lab
    env.start_agent()
    env.dns("pod-a", "good.example")
    assert env.connect("pod-a", "good.example", "--split", str(split))["body"] == "hello good.example"
    assert env.connect("pod-a", "other.example", "--split", str(split))["result"] == "reset"
    allowed, denied = env.server_events(2)
    assert allowed["handshake"] and denied["bytes_before"] == 0  # not even the first piece got through


def test_pods_no_policy_selects_are_not_checked(sni_lab, queue_statement):
    env = sni_lab
    env.start_agent()
    assert env.connect("pod-b", "other.example")["body"] == "hello other.example"
    assert env.denied() == []


def test_audit_mode_logs_and_lets_through(sni_lab, queue_statement):
    env = sni_lab
    env.start_agent("--mode", "audit")
    env.dns("pod-a", "good.example")
    assert env.connect("pod-a", "other.example")["body"] == "hello other.example"
    (line,) = env.denied()
    assert line["event"] == "egress.would_sni_deny" and line["verdict"] == "accept (audit)"
    assert env.metric("fqdn_policy_sni_connections_total", pod=POD, verdict="would_deny") == 1


def test_the_flag_verifies_policies_without_the_annotation(sni_lab, queue_statement):
    env = sni_lab
    env.write_policy([*policies(annotated=False), *lab_pods()])
    env.start_agent("--verify-sni")
    env.dns("pod-a", "good.example")
    assert env.connect("pod-a", "good.example")["result"] == "ok"
    assert env.connect("pod-a", "other.example")["result"] == "reset"


def test_a_verifying_policy_arriving_later_turns_the_check_on(sni_lab, queue_statement):
    env = sni_lab
    env.write_policy([*policies(annotated=False), *lab_pods()])
    env.start_agent()
    assert env.has_log("agent.ready", verify_sni="off")
    env.write_policy([*policies(), *lab_pods()])
    wait_for(lambda: env.has_log("sni.datapath_on"), patience(10), "the datapath turned on")
    env.dns("pod-a", "good.example")
    assert env.connect("pod-a", "other.example")["result"] == "reset"
    assert env.connect("pod-a", "good.example")["result"] == "ok"


def test_a_verified_connection_survives_an_agent_restart(sni_lab, queue_statement):
    """The verdict is the connection's conntrack mark: a new agent never re-checks it."""
    env = sni_lab
    env.start_agent()
    env.dns("pod-a", "good.example")
    held = env.lab.popen(
        "pod-a",
        [sys.executable, "-c", _HOLD_OPEN, CDN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=module_env(),
        cwd=REPO_ROOT,
    )
    assert held.stdout.readline().strip() == "handshaken"
    env.stop_agent()
    env.start_agent()
    held.stdin.write("go\n")
    held.stdin.flush()
    assert held.stdout.readline().strip() == "answered", held.poll()
    held.wait(timeout=patience(10))
    assert [e["event"] for e in env.denied()] == []


# A TLS client that completes its handshake, waits (for the agent's restart) until told to go on, then
# sends its request on the same connection.
_HOLD_OPEN = r"""
import socket, ssl, sys
from tests.lab.tlsclient import CA
context = ssl.create_default_context(cafile=str(CA))
sock = socket.create_connection((sys.argv[1], 443), timeout=30)
tls = context.wrap_socket(sock, server_hostname="good.example")
print("handshaken", flush=True)
sys.stdin.readline()
tls.sendall(b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n")
reply = tls.recv(4096)
print("answered" if b"hello good.example" in reply else f"got {reply!r}", flush=True)
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_resolve(sni_lab, queue_statement):
    env = sni_lab
    env.start_agent()
    env.dns("pod-a", "good.example")
    ca = str(CA)

    def curl(name: str):
        argv = ["curl", "-sS", "--max-time", "5", "--resolve", f"{name}:443:{CDN}", "--cacert", ca,
                f"https://{name}/"]  # fmt: skip
        return env.lab.run("pod-a", argv, check=False)

    ok = curl("good.example")
    assert ok.returncode == 0 and ok.stdout == "hello good.example", ok.stderr
    denied = curl("other.example")
    assert denied.returncode == 35 or "reset" in denied.stderr.lower(), (denied.returncode, denied.stderr)


def test_the_flag_refuses_to_start_where_the_kernel_cannot_queue(sni_lab, missing_queue):
    if not missing_queue:
        pytest.skip("this kernel has the nft queue statement")
    env = sni_lab
    env.start_agent("--verify-sni", wait_ready=False)
    assert env.agent.wait(timeout=patience(15)) != 0
    text = env.agent_log.read_text()
    assert "CONFIG_NFT_QUEUE" in text, text  # the missing feature is named


def test_an_annotation_where_the_kernel_cannot_queue_keeps_verified_destinations_closed(
    sni_lab, missing_queue
):
    if not missing_queue:
        pytest.skip("this kernel has the nft queue statement")
    env = sni_lab
    env.start_agent()
    assert env.has_log("sni.unavailable") and env.has_log("agent.ready", verify_sni="fail-closed")
    env.dns("pod-a", "good.example")
    assert env.connect("pod-a", "good.example")["result"] in ("timeout", "reset")
    env.dns("pod-a", "plain.example")  # a non-verifying policy's destination is not checked
    assert env.tcp("pod-a", PLAIN, 8080) == "connected"
