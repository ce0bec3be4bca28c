"""The built image run as deploy/daemonset.yaml runs it, in the lab's node namespace, with runc: the
init container's command, then the agent with the DaemonSet's args, the ConfigMap's flags, its env
(NODE_NAME, POD_IP), its securityContext (NET_ADMIN only, read-only root) and an in-cluster service
account against the fake API server over HTTPS. The article is replayed against it, its Events reach
the API server, and a real Prometheus on the fake internet scrapes it with the PrometheusRule loaded:
every alert and dashboard query evaluates, and uses only what the agent exports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.cluster import runc
from tests.cluster.monitoring import (
    SCRAPE_SERIES,
    alert_rules,
    dashboard_queries,
    exported_names,
    metric_names,
)
from tests.cluster.prometheus import Prometheus
from tests.e2e.agentlab import ZONE, AgentLab, wait_for
from tests.e2e.test_kubernetes import NODE, POLICIES, kube_pods, kube_policy
from tests.lab.addressing import INET_UPLINK_V4, NODE_POD_GW_V4, NODE_UPLINK_V4
from tests.lab.netlab import Lab
from tests.lab.upstream import DEFAULT_DNS, FakeInternet
from tests.unit.test_deploy import manifest

pytestmark = pytest.mark.cluster

GOOGLE, CLOUDFLARE, YOURDOMAIN = "198.51.100.10", "198.51.100.20", "198.51.100.30"
API_HOST, API_PORT = NODE_POD_GW_V4, 6443  # where the pod's KUBERNETES_SERVICE_HOST/PORT point
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN = "service-account-token"
COREDNS_POD = "10.244.200.53"  # the cluster DNS Service's endpoint, in the Pod range


def kube_proxy_standin(cluster_dns: str) -> str:
    """What kube-proxy does for the cluster DNS Service, for pods and for the node itself."""
    rule = f"ip daddr {cluster_dns} meta l4proto {{ udp, tcp }} th dport 53 dnat ip to {COREDNS_POD}:53"
    return f"""
table inet kube_proxy_standin {{
    chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; {rule}; }}
    chain output {{ type nat hook output priority -100; policy accept; {rule}; }}
}}
"""


class Node:
    """The DaemonSet's pod on the lab's node: its containers run from the image with runc."""

    def __init__(self, lab: Lab, env: AgentLab, image, workdir) -> None:
        self.lab, self.env, self.image, self.workdir = lab, env, image, workdir
        self.pod = manifest("DaemonSet")["spec"]["template"]["spec"]
        self.flags = manifest("ConfigMap")["data"]["run.flags"]
        self.netns = f"/var/run/netns/{lab.ns('node')}"
        self.ids: list[str] = []
        self.agent: subprocess.Popen[bytes] | None = None
        self.guard: subprocess.Popen[bytes] | None = None
        self.log = workdir / "agent.log"

    def flag(self, name: str) -> str:
        (value,) = [f.split("=", 1)[1] for f in self.flags.split() if f.startswith(f"--{name}=")]
        return value

    def volumes(self, container) -> list[tuple[object, str]]:
        """The ConfigMap volume as the kubelet mounts it, and the service account's projected token."""
        flags = self.workdir / "flags"
        flags.mkdir(exist_ok=True)
        (flags / "run.flags").write_text(self.flags)
        sources = {v["name"]: v for v in self.pod["volumes"]}
        mounts = []
        for mount in container.get("volumeMounts", []):
            assert sources[mount["name"]]["configMap"]["name"] == manifest("ConfigMap")["metadata"]["name"]
            mounts.append((flags, mount["mountPath"]))
        return [*mounts, (self.workdir / "serviceaccount", SERVICE_ACCOUNT)]

    def container(self, spec, name: str) -> runc.Container:
        env = dict(self.image.env)
        env.update(KUBERNETES_SERVICE_HOST=API_HOST, KUBERNETES_SERVICE_PORT=str(API_PORT), HOSTNAME=NODE)
        downward = {"spec.nodeName": NODE, "status.podIP": NODE_UPLINK_V4}  # hostNetwork: the node's IP
        for var in spec.get("env", []):
            env[var["name"]] = downward[var["valueFrom"]["fieldRef"]["fieldPath"]]
        argv = spec.get("command") or self.image.config["Entrypoint"]
        argv = [runc.expand(a, env) for a in [*argv, *spec.get("args", [])]]
        return runc.Container(
            name, self.image.rootfs, argv, env, spec["securityContext"], self.netns, self.volumes(spec)
        )

    def run(self, spec, wait: bool) -> subprocess.Popen[bytes]:
        container_id = f"{self.lab.id}-{spec['name']}"
        self.ids.append(container_id)
        bundle = self.container(spec, spec["name"]).bundle(self.workdir / "bundles" / spec["name"])
        return runc.run(
            container_id, bundle, self.log if not wait else self.workdir / f"{spec['name']}.log", wait
        )

    def start(self) -> None:
        (init,) = self.pod["initContainers"]
        done = self.run(init, wait=True)
        assert done.returncode == 0, (self.workdir / f"{init['name']}.log").read_text()
        agent = self.pod["containers"][0]
        self.agent = self.run(agent, wait=False)
        wait_for(
            lambda: self.ready() or self.agent.poll() is not None, 60, "the agent in its container ready"
        )
        assert self.agent.poll() is None, self.log.read_text()

    def start_guard(self) -> subprocess.Popen[bytes]:
        """The pod's second container, the dns-guard, with its own log."""
        guard = self.pod["containers"][1]
        self.ids.append(f"{self.lab.id}-{guard['name']}")
        bundle = self.container(guard, guard["name"]).bundle(self.workdir / "bundles" / guard["name"])
        self.guard = runc.run(self.ids[-1], bundle, self.workdir / "dns-guard.log")
        wait_for(lambda: _logged(self.workdir / "dns-guard.log", "dns_guard.ready"), 30, "the dns-guard")
        return self.guard

    def kill_agent(self) -> None:
        """As a crash: SIGKILL to the agent's process (the kubelet has not restarted it yet)."""
        subprocess.run(["runc", "kill", f"{self.lab.id}-agent", "KILL"], check=True)
        assert self.agent is not None
        self.agent.wait(20)

    def logs(self) -> list[dict]:
        return self.env.logs(self.log)

    def ready(self) -> bool:
        return any(e.get("event") == "agent.ready" for e in self.logs())

    def stop(self) -> int:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGTERM)
        return self.agent.wait(20)

    def cleanup(self) -> None:
        for process in (self.agent, self.guard):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        for container_id in self.ids:
            runc.delete(container_id)


def _logged(path, event: str) -> bool:
    return path.exists() and any(f'"event": "{event}"' in line for line in path.read_text().splitlines())


def service_account(workdir) -> tuple[str, str]:
    """A token, and a self-signed certificate for the API server's address as the pod's CA."""
    account = workdir / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    (account / "namespace").write_text("fqdn-policy")
    cert, key = workdir / "apiserver.crt", workdir / "apiserver.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=kubernetes",
         "-addext", f"subjectAltName=IP:{API_HOST}"],
        check=True, capture_output=True,
    )  # fmt: skip
    (account / "ca.crt").write_text(cert.read_text())
    return str(cert), str(key)


class FakeApi:
    def __init__(self, lab: Lab, workdir) -> None:
        self.lab = lab
        self.url = f"https://{API_HOST}:{API_PORT}"
        cert, key = service_account(workdir)
        seed = workdir / "seed.json"
        objects = [{"resource": POLICIES, "object": kube_policy()}]
        objects += [{"resource": "pods", "object": p} for p in kube_pods()]
        seed.write_text(json.dumps(objects))
        self.argv = [sys.executable, "-m", "tests.kubeapi.serve", "--listen", f"{API_HOST}:{API_PORT}",
                     "--token", TOKEN, "--seed", str(seed), "--tls-cert", cert, "--tls-key", key]  # fmt: skip
        self.process = None

    def start(self) -> None:
        self.process = self.lab.popen("node", self.argv)
        self.control("wait")

    def control(self, *command: str) -> str:
        argv = [sys.executable, "-m", "tests.kubeapi.serve", "--control", self.url, *command]
        return self.lab.run("node", argv, timeout=15).stdout

    def put(self, resource: str, obj: dict) -> None:
        self.control("put", resource, json.dumps(obj))

    def events(self) -> list[dict]:
        return json.loads(self.control("events"))["items"]


@pytest.fixture
def daemonset(image, tmp_path):
    with Lab() as lab:
        env = AgentLab(lab, tmp_path)
        # The cluster DNS "pod": the fake internet's DNS server also answers on an address in the Pod
        # range, which the ConfigMap's --exempt covers, as CoreDNS's endpoints are in a cluster.
        lab.run("inet", ["ip", "addr", "add", f"{COREDNS_POD}/32", "dev", lab.inet_hosts_if])
        lab.run("node", ["ip", "route", "add", f"{COREDNS_POD}/32", "via", INET_UPLINK_V4])
        env.internet = FakeInternet(lab, tmp_path, ZONE, dns=(*DEFAULT_DNS, f"{COREDNS_POD}:53"))
        with env.internet:
            cluster_dns = manifest("ConfigMap")["data"]["run.flags"].split("--upstream=")[1].split(":")[0]
            lab.run("node", ["nft", "-f", "-"], input=kube_proxy_standin(cluster_dns))
            # The node routes the Service range as a cluster node would (here: towards the fake internet,
            # which the stand-in's DNAT makes moot for the DNS Service).
            lab.run("node", ["ip", "route", "add", "10.96.0.0/12", "via", INET_UPLINK_V4])
            api = FakeApi(lab, tmp_path)
            api.start()
            node = Node(lab, env, image, tmp_path)
            try:
                yield node, api, env, cluster_dns
            finally:
                node.cleanup()


def test_the_article_replays_against_the_image_run_as_the_daemonset(daemonset, tmp_path):
    node, api, env, cluster_dns = daemonset
    node.start()
    ready = next(e for e in node.logs() if e["event"] == "agent.ready")
    assert ready["source"] == f"kubernetes {api.url} node {NODE} (configuration: in-cluster)"
    assert ready["listen"] == [node.flag("listen")] and ready["enforced_pods"] == 1
    server = f"{cluster_dns}:53"  # what pods have in resolv.conf: DNATed to the agent (--dns-service)

    def dns(pod, name):
        return env.dns(pod, name, server=server)

    def addresses(answer):
        return [a["data"] for a in answer["answers"]]

    assert env.tcp("pod-a", GOOGLE, 443) == "timeout"
    assert env.tcp("pod-b", CLOUDFLARE, 443) == "connected"
    answer = dns("pod-a", "www.google.com")
    assert answer["rcode"] == "NOERROR" and addresses(answer) == [GOOGLE]
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"
    assert addresses(dns("pod-a", "api.yourdomain.com")) == [YOURDOMAIN]
    assert env.tcp("pod-a", YOURDOMAIN, 443) == "connected"
    assert addresses(dns("pod-a", "www.cloudflare.com")) == [CLOUDFLARE]
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"
    assert env.tcp("pod-a", GOOGLE, 80) == "timeout"
    assert env.tcp("pod-b", GOOGLE, 80) == "connected"

    # The policy changed on the API server: the rule loses its ports, and port 80 works.
    before = sum(1 for e in node.logs() if e.get("event") == "policy.loaded")
    api.put(POLICIES, kube_policy(ports=False))
    wait_for(
        lambda: sum(1 for e in node.logs() if e.get("event") == "policy.loaded") > before, 10, "the change"
    )
    assert env.tcp("pod-a", GOOGLE, 80) == "connected"
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"

    # A policy the agent refuses gets an Event from this node, posted with the service account.
    bad = kube_policy()
    bad["metadata"]["name"] = "bad"
    bad["spec"]["egress"][0]["ports"] = [{"protocol": "TCPP"}]
    api.put(POLICIES, bad)
    wait_for(lambda: any(e["involvedObject"]["name"] == "bad" for e in api.events()), 10, "the Event")
    (event,) = [e for e in api.events() if e["involvedObject"]["name"] == "bad"]
    assert event["reason"] == "PolicyRefused" and event["source"] == {
        "component": "fqdn-policy",
        "host": NODE,
    }

    decisions = [
        e for e in node.logs() if e.get("event") == "dns.decision" and e.get("qname") == "www.google.com"
    ]
    assert decisions[0]["pod"] == "default/curl-client" and decisions[0]["outcome"] == "allowed"

    # SIGTERM: a clean exit; what is allowed stays allowed, and the redirect is gone.
    assert node.stop() == 0
    assert env.tcp("pod-a", GOOGLE, 80) == "connected"
    tables = sorted(line.split()[-1] for line in env.nft("list", "tables").splitlines())
    assert tables == ["fqdn_policy", "fqdn_policy_guard", "kube_proxy_standin"]


def test_prometheus_scrapes_the_agent_and_evaluates_every_alert_and_dashboard_query(daemonset, tmp_path):
    node, _api, env, cluster_dns = daemonset
    node.start()
    public = next(
        a
        for a in node.container(node.pod["containers"][0], "agent").argv
        if a.startswith("--public-metrics=")
    )
    target = public.split("=", 1)[1]
    assert target == f"{NODE_UPLINK_V4}:9154"
    # Traffic, so histograms and per-pod counters have samples: an allowed lookup and a denied connect.
    env.dns("pod-a", "www.google.com", server=f"{cluster_dns}:53")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"

    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    job = manifest_label_job()
    prometheus = Prometheus(env.lab, "inet", workdir, job, [target], {"node": NODE})
    prometheus.start()
    try:
        wait_for(lambda: _up(prometheus) == 1.0, 30, "Prometheus scraping the agent from another host")
        wait_for(lambda: _evaluated(prometheus), 30, "every rule evaluated")
        time.sleep(3)  # a few scrapes, so rate() has two samples in its window
        # What the agent exports: its families, read from the endpoint Prometheus scrapes (a family with
        # no samples yet counts); and Prometheus did scrape them.
        status, exposition = env.http("/metrics", target, ns="inet")
        assert status == 200
        exported = exported_names(exposition)
        scraped = {
            s["__name__"]
            for s in prometheus.api("series", **{"match[]": '{__name__=~"fqdn_policy_.+"}'})["data"]
        }
        assert scraped <= exported and {"fqdn_policy_ready", "fqdn_policy_dns_queries_total"} <= scraped

        groups = prometheus.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in alert_rules())
        for rule in rules:
            assert rule["health"] == "ok" and not rule.get("lastError"), rule

        queries = [(r["alert"], r["expr"]) for r in alert_rules()] + dashboard_queries()
        for what, expr in queries:
            answer = prometheus.query(expr)
            assert answer["status"] == "success", (what, expr, answer)
            assert metric_names(expr) <= exported | SCRAPE_SERIES, (what, metric_names(expr) - exported)
        # The agent is up and ready, so neither of those alerts fires.
        assert prometheus.query('ALERTS{alertname=~"FqdnPolicyAgent.*"}')["data"]["result"] == []
        # /state and /explain are not reachable from the Prometheus host; /metrics is.
        assert env.http("/state", target, ns="inet")[0] == 404
        assert env.http("/state", f"{NODE_UPLINK_V4}:9153", ns="inet")[0] == 0
    finally:
        prometheus.stop()
    assert node.stop() == 0


def test_the_dns_guard_container_lifts_the_redirect_when_the_agent_crashes(daemonset):
    """The DaemonSet's second container: with the agent killed, pods' DNS to the cluster DNS Service
    goes to the cluster DNS again (names resolve), while the enforcement table stays."""
    node, _api, env, cluster_dns = daemonset
    node.start()
    node.start_guard()
    server = f"{cluster_dns}:53"
    assert env.dns("pod-a", "www.google.com", server=server)["rcode"] == "NOERROR"
    assert "fqdn_policy_dns" in env.nft("list", "tables")
    node.kill_agent()
    wait_for(lambda: "fqdn_policy_dns" not in env.nft("list", "tables"), 15, "the redirect removed")
    assert _logged(node.workdir / "dns-guard.log", "dns.redirect_orphaned")
    answer = env.dns("pod-a", "www.cloudflare.com", server=server)  # straight to the cluster DNS
    assert answer["rcode"] == "NOERROR" and [a["data"] for a in answer["answers"]] == [CLOUDFLARE]
    assert env.tcp("pod-a", GOOGLE, 443) == "connected"  # allowed before the crash: still allowed
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"  # nothing new is allowed


def manifest_label_job() -> str:
    """The job label the ServiceMonitor gives the agents' series (its jobLabel, read from the Service)."""
    from tests.cluster.monitoring import MONITORING

    docs = {d["kind"]: d for p in MONITORING.glob("*.yaml") for d in yaml.safe_load_all(p.read_text())}
    return docs["Service"]["metadata"]["labels"][docs["ServiceMonitor"]["spec"]["jobLabel"]]


def _up(prometheus: Prometheus) -> float:
    answer = prometheus.query("up")
    result = answer.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else 0.0


def _evaluated(prometheus: Prometheus) -> bool:
    answer = prometheus.api("rules")
    if answer.get("status") != "success":
        return False
    rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
    return bool(rules) and all(r.get("lastEvaluation", "").startswith("20") for r in rules)


def test_promtool_checks_the_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    from tests.cluster.monitoring import rule_groups

    rules.write_text(yaml.safe_dump(rule_groups()))
    result = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
    broken = tmp_path / "broken.yaml"
    groups = rule_groups()
    groups["groups"][0]["rules"][0]["expr"] = "rate(fqdn_policy_ready[5m]"
    broken.write_text(yaml.safe_dump(groups))
    assert subprocess.run(["promtool", "check", "rules", broken], capture_output=True).returncode != 0
