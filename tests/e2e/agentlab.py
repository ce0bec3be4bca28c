"""A running agent in a Lab: the fake internet in `inet`, `fqdn-policy run` in `node`, probes in pods.

Shared by the end-to-end tests; it starts the real console script, not an in-process agent.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.lab.netlab import Lab
from tests.lab.slowdown import patience
from tests.lab.upstream import FakeInternet

AGENT = str(Path(sys.executable).with_name("fqdn-policy"))
PROXY_V4 = "10.244.1.1:53"
PROXY_V6 = "[2001:db8:244::1]:53"
METRICS = "127.0.0.1:9153"  # the agent's default --metrics address, in the node namespace

_HTTP_GET = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except urllib.error.URLError as e:
    status, body = 0, str(e.reason).encode()
print(json.dumps({"status": status, "body": body.decode()}))
"""

ZONE = {
    "www.google.com": {"A": ["198.51.100.10"], "AAAA": ["2001:db8:100::10"], "ttl": 300},
    "www.cloudflare.com": {"A": ["198.51.100.20"], "AAAA": ["2001:db8:100::20"], "ttl": 300},
    "api.yourdomain.com": {"A": ["198.51.100.30"], "AAAA": ["2001:db8:100::30"], "ttl": 300},
}


def article_policy(ports: bool = True) -> dict[str, Any]:
    rule: dict[str, Any] = {"matches": [{"pattern": "*.yourdomain.com"}, {"name": "www.google.com"}]}
    if ports:
        rule["ports"] = [{"protocol": "TCP", "port": 443}]
    return {
        "apiVersion": "networking.gke.io/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "metadata": {"name": "allow-out-fqdnnp", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "curl-client"}}, "egress": [rule]},
    }


def pod_doc(name: str, labels: dict[str, str], ipv4: str, ipv6: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "status": {"podIPs": [{"ip": ipv4}, {"ip": ipv6}]},
    }


def lab_pods() -> list[dict[str, Any]]:
    return [
        pod_doc("curl-client", {"app": "curl-client"}, "10.244.1.10", "2001:db8:244::10"),
        pod_doc("other", {"app": "other"}, "10.244.1.11", "2001:db8:244::11"),
    ]


class AgentLab:
    def __init__(self, lab: Lab, workdir: Path, zone: dict[str, Any] = ZONE) -> None:
        self.lab = lab
        self.internet = FakeInternet(lab, workdir, zone)
        self.workdir = workdir
        self.policy_file = workdir / "policy.yaml"
        self.agent_log = workdir / "agent.log"
        self.agent: subprocess.Popen[Any] | None = None
        # Where the policy comes from: the file by default; Kubernetes tests swap in --kubernetes.
        self.source_args = ["--policy", str(self.policy_file)]
        self.upstream = "198.51.100.53:53"  # the fake internet's DNS; a test may point elsewhere
        self.env: dict[str, str] | None = None

    def write_policy(self, documents: list[dict[str, Any]]) -> None:
        tmp = self.policy_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump_all(documents))
        tmp.replace(self.policy_file)

    def agent_argv(self, *extra: str, listen: tuple[str, ...] = (PROXY_V4, PROXY_V6)) -> list[str]:
        """`fqdn-policy run` as the lab runs it: the lab's policy source, proxy addresses and upstream."""
        listen_args = [arg for address in listen for arg in ("--listen", address)]
        return [
            AGENT,
            "run",
            *self.source_args,
            *listen_args,
            "--upstream",
            self.upstream,
            *extra,
        ]

    def start_agent(
        self, *extra: str, listen: tuple[str, ...] = (PROXY_V4, PROXY_V6), wait_ready: bool = True
    ) -> subprocess.Popen[Any]:
        readies = self.count_log("agent.ready")
        log = open(self.agent_log, "a")  # noqa: SIM115 - the child writes to it until it exits
        self.agent = self.lab.popen(
            "node",
            self.agent_argv(*extra, listen=listen),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        if not wait_ready:
            return self.agent
        wait_for(
            lambda: self.count_log("agent.ready") > readies or self.agent.poll() is not None,
            patience(15),
            "agent ready",
        )
        assert self.agent.poll() is None, self.agent_log.read_text()
        return self.agent

    def stop_agent(self, sig: int = signal.SIGTERM) -> int:
        assert self.agent is not None
        self.agent.send_signal(sig)
        return self.agent.wait(timeout=patience(10))

    def logs(self, path: Path | None = None) -> list[dict[str, Any]]:
        path = path or self.agent_log
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "unparsed", "text": line})
        return out

    def count_log(self, event: str) -> int:
        return sum(1 for e in self.logs() if e.get("event") == event)

    def has_log(self, event: str, **fields: Any) -> bool:
        return any(
            e.get("event") == event and all(e.get(k) == v for k, v in fields.items()) for e in self.logs()
        )

    def probe(self, pod: str, *argv: str) -> dict[str, Any]:
        out = self.lab.run(pod, [sys.executable, "-m", "tests.lab.probe", *argv], timeout=patience(20))
        return json.loads(out.stdout)

    def dns(
        self, pod: str, name: str, qtype: str = "A", server: str = PROXY_V4, tcp: bool = False
    ) -> dict[str, Any]:
        return self.probe(pod, "dns", name, qtype, "--server", server, *(["--tcp"] if tcp else []))

    def tcp(self, pod: str, host: str, port: int, timeout: float = 1.0) -> str:
        return self.probe(pod, "tcp", host, str(port), "--timeout", str(timeout))["result"]

    def dnsload_argv(self, names: list[str], rate: int, seconds: float, timeout: float = 0.5) -> list[str]:
        """tests.lab.dnsload against the proxy: a steady bounded load with one retry per query."""
        argv = [sys.executable, "-m", "tests.lab.dnsload", "--server", "10.244.1.1:53"]
        for name in names:
            argv += ["--name", name]
        return [*argv, "--rate", str(rate), "--seconds", str(seconds), "--timeout", str(timeout)]

    def nft(self, *argv: str) -> str:
        return self.lab.run("node", ["nft", *argv]).stdout

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`fqdn-policy ARGV` in the node namespace (where the agent and its table live)."""
        return self.lab.run("node", [AGENT, *argv], check=False)

    def http(self, path: str, address: str = METRICS, ns: str = "node") -> tuple[int, str]:
        """GET http://ADDRESS/PATH from inside namespace NS (the node's by default): (status, body);
        status 0 when the connection is refused."""
        argv = [sys.executable, "-c", _HTTP_GET, f"http://{address}{path}"]
        out = self.lab.run(ns, argv, timeout=patience(10))
        result = json.loads(out.stdout)
        return result["status"], result["body"]

    def metric(self, name: str, **labels: str) -> float:
        """One sample from /metrics; 0 when the series is absent."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.http("/metrics")
        assert status == 200, body
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return 0.0


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
