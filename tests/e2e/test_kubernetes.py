"""Kubernetes mode end to end: the fake API server runs in the lab's node namespace, the real agent
watches it with --kubernetes and a kubeconfig, pods in their namespaces probe through it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.agentlab import AgentLab, article_policy, lab_pods, wait_for
from tests.lab.netlab import Lab

pytestmark = pytest.mark.netns

GOOGLE, CLOUDFLARE, API = "198.51.100.10", "198.51.100.20", "198.51.100.30"
API_URL = "http://10.244.1.1:6443"
NODE = "lab-node"
POLICIES, PODS = "fqdnnetworkpolicies", "pods"


def kube_policy(ports: bool = True, names: tuple[str, ...] | None = None) -> dict:
    doc = article_policy(ports)
    doc["apiVersion"] = "fqdn.policy.dev/v1alpha1"
    if names is not None:
        doc["spec"]["egress"][0]["matches"] = [{"name": n} for n in names]
    return doc


def kube_pods() -> list[dict]:
    pods = lab_pods()
    for doc in pods:
        doc["spec"] = {"nodeName": NODE}
        doc["status"]["phase"] = "Running"
    return pods


class KubeLab:
    """An AgentLab whose agent watches a fake API server process in the node namespace."""

    def __init__(self, lab: Lab, env: AgentLab, tmp_path) -> None:
        self.lab, self.env = lab, env
        seed = tmp_path / "seed.json"
        objects = [{"resource": POLICIES, "object": kube_policy()}]
        objects += [{"resource": PODS, "object": p} for p in kube_pods()]
        seed.write_text(json.dumps(objects))
        self.server_argv = [
            sys.executable, "-m", "tests.kubeapi.serve",
            "--listen", "10.244.1.1:6443", "--token", "lab-token", "--seed", str(seed),
        ]  # fmt: skip
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "lab", "cluster": {"server": API_URL}}],
                    "users": [{"name": "agent", "user": {"token": "lab-token"}}],
                    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "agent"}}],
                    "current-context": "lab",
                }
            )
        )
        env.source_args = ["--kubernetes", "--kubeconfig", str(kubeconfig)]
        env.env = {**os.environ, "NODE_NAME": NODE}
        self.server = None

    def start_server(self) -> None:
        self.server = self.lab.popen("node", self.server_argv)
        self.control("wait")

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.send_signal(signal.SIGKILL)
        self.server.wait(5)

    def control(self, *command: str) -> None:
        argv = [sys.executable, "-m", "tests.kubeapi.serve", "--control", API_URL, *command]
        self.lab.run("node", argv, timeout=15)

    def put(self, resource: str, obj: dict) -> None:
        self.control("put", resource, json.dumps(obj))

    def elements(self, set_name: str) -> str:
        return self.env.nft("list", "set", "inet", "fqdn_policy", set_name)


@pytest.fixture
def kube_lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with Lab() as lab:
        env = AgentLab(lab, tmp_path)
        with env.internet:
            kube = KubeLab(lab, env, tmp_path)
            yield kube


def loaded(env: AgentLab, after: int) -> bool:
    return sum(1 for e in env.logs() if e.get("event") == "policy.loaded") > after


def test_policy_change_on_the_api_server_changes_enforcement_within_a_second(kube_lab):
    kube, env = kube_lab, kube_lab.env
    kube.start_server()
    env.start_agent()
    ready = next(e for e in env.logs() if e["event"] == "agent.ready")
    assert ready["source"].startswith(f"kubernetes {API_URL}") and ready["enforced_pods"] == 1
    env.dns("pod-a", "www.google.com")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", GOOGLE, 80) == "timeout"

    before = env.count_log("policy.loaded")
    kube.put(POLICIES, kube_policy(ports=False))  # the rule loses its ports: every port allowed
    started = time.monotonic()  # the API server serves the change from now on
    wait_for(lambda: loaded(env, before), 1.0, "the changed policy in force")
    assert time.monotonic() - started < 1.0
    assert env.tcp("pod-a", GOOGLE, 80) == "connected"  # no new lookup needed

    hold = env.lab.popen(  # an established flow to google's echo port, across the next change
        "pod-a",
        [sys.executable, "-m", "tests.lab.probe", "hold", GOOGLE, "7", "--seconds", "4"],
        stdout=subprocess.PIPE,
    )
    time.sleep(1)
    before = env.count_log("policy.loaded")
    kube.put(POLICIES, kube_policy(names=("www.cloudflare.com",)))  # google no longer allowed
    started = time.monotonic()
    wait_for(lambda: loaded(env, before), 1.0, "the narrowed policy in force")
    assert time.monotonic() - started < 1.0
    assert env.tcp("pod-a", GOOGLE, 443) == "timeout"  # new connections are dropped
    held = json.loads(hold.communicate(timeout=30)[0])
    assert held["result"] == "held", held  # the established one continues
    env.dns("pod-a", "www.cloudflare.com")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "connected"


def test_deleted_pod_loses_its_elements_and_a_relabelled_one_is_reevaluated(kube_lab):
    kube, env = kube_lab, kube_lab.env
    kube.start_server()
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    assert "10.244.1.10 . 198.51.100.10" in kube.elements("allow_v4_port")

    other = kube_pods()[1]
    other["metadata"]["labels"] = {"app": "curl-client"}  # pod-b becomes selected
    before = env.count_log("policy.loaded")
    kube.put(PODS, other)
    wait_for(lambda: loaded(env, before), 1.0, "pod-b selected")
    assert env.tcp("pod-b", CLOUDFLARE, 443) == "timeout"  # enforced now
    env.dns("pod-b", "www.google.com")
    assert env.tcp("pod-b", GOOGLE, 443) == "connected"

    before = env.count_log("policy.loaded")
    kube.control("delete", PODS, "default/curl-client")
    wait_for(lambda: loaded(env, before), 1.0, "pod-a deleted")
    assert "10.244.1.10" not in kube.elements("allow_v4_port")
    assert "10.244.1.10" not in kube.elements("enforced_v4")
    assert "10.244.1.11 . 198.51.100.10" in kube.elements("allow_v4_port")


def test_with_the_api_server_gone_enforcement_continues_unchanged(kube_lab):
    kube, env = kube_lab, kube_lab.env
    kube.start_server()
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"

    kube.kill_server()
    wait_for(lambda: env.count_log("kubernetes.watch_failing") >= 3, 5, "the watches failing")
    time.sleep(2)  # several retries later
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"  # allowed stays allowed
    assert env.tcp("pod-a", GOOGLE, 80) == "timeout"  # not allowed stays dropped
    assert env.dns("pod-a", "www.cloudflare.com")["rcode"] == "NOERROR"  # lookups still answered
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    assert env.dns("pod-a", "api.yourdomain.com")["rcode"] == "NOERROR"  # and still allow by policy
    assert env.tcp("pod-a", API, 443) == "connected"
    assert env.tcp("pod-b", CLOUDFLARE, 443) == "connected"  # the unselected pod stays unselected
    assert env.count_log("kubernetes.watch_failing") == 3  # once per resource, not per retry
    assert env.agent is not None and env.agent.poll() is None


def test_at_start_the_agent_waits_for_the_api_server_and_sigterm_ends_the_wait(kube_lab):
    kube, env = kube_lab, kube_lab.env
    agent = env.start_agent(wait_ready=False)
    wait_for(lambda: env.count_log("kubernetes.watch_failing") == 3, 20, "the watches failing")
    assert env.count_log("agent.ready") == 0
    assert "fqdn_policy" not in env.nft("list", "tables")  # the kernel is not touched before a list

    kube.start_server()
    wait_for(lambda: env.count_log("agent.ready") == 1, 20, "ready once the API server answers")
    env.dns("pod-a", "www.google.com")
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    env.stop_agent()

    kube.kill_server()
    agent = env.start_agent(wait_ready=False)
    wait_for(lambda: env.count_log("kubernetes.watch_failing") == 6, 20, "the watches failing again")
    assert env.stop_agent() == 0
    assert env.logs()[-1]["event"] == "agent.stopped" and env.logs()[-1]["before"] == "ready"
    assert agent.returncode == 0


def test_a_network_policy_from_the_api_server_is_composed(kube_lab):
    """NetworkPolicies are watched too: an egress ipBlock for an FQDN-enforced pod opens its
    addresses with no lookup, and deleting it closes them again."""
    kube, env = kube_lab, kube_lab.env
    kube.start_server()
    env.start_agent()
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    network_policy = {
        "metadata": {"name": "cloudflare-https", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "curl-client"}},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": f"{CLOUDFLARE}/32"}}],
                    "ports": [{"protocol": "TCP", "port": 443}],
                }
            ],
        },
    }
    before = env.count_log("policy.loaded")
    kube.put("networkpolicies", network_policy)
    wait_for(lambda: loaded(env, before), 1.0, "the NetworkPolicy in force")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 80) == "timeout"

    before = env.count_log("policy.loaded")
    kube.control("delete", "networkpolicies", "default/cloudflare-https")
    wait_for(lambda: loaded(env, before), 1.0, "the NetworkPolicy gone")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
