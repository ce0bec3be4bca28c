"""Operator endpoints and commands against the real agent in namespaces: /metrics, /healthz, /readyz,
`fqdn-policy status` and `fqdn-policy explain` (output and exit codes)."""

import json
import sys

import pytest

from tests.e2e.agentlab import AGENT, PROXY_V4, wait_for

pytestmark = pytest.mark.netns

GOOGLE = "198.51.100.10"
POD = "default/curl-client"


def test_metrics_move_as_queries_flow(agent_lab):
    env = agent_lab
    env.start_agent()
    allowed = ("fqdn_policy_dns_queries_total", {"verdict": "allowed", "qtype": "A"})
    refused_name = ("fqdn_policy_dns_queries_total", {"verdict": "name-not-allowed", "qtype": "A"})
    writes = ("fqdn_policy_nft_write_latency_seconds_count", {})
    upstream = ("fqdn_policy_upstream_latency_seconds_count", {})
    before = {m[0] + str(m[1]): env.metric(m[0], **m[1]) for m in (allowed, refused_name, writes, upstream)}
    assert env.dns("pod-a", "www.google.com")["rcode"] == "NOERROR"
    assert env.dns("pod-a", "www.cloudflare.com")["rcode"] == "NOERROR"
    after = {m[0] + str(m[1]): env.metric(m[0], **m[1]) for m in (allowed, refused_name, writes, upstream)}
    key = lambda m: m[0] + str(m[1])  # noqa: E731
    assert after[key(allowed)] == before[key(allowed)] + 1
    assert after[key(refused_name)] == before[key(refused_name)] + 1
    assert after[key(writes)] >= before[key(writes)] + 1  # the allowed answer's write
    assert after[key(upstream)] == before[key(upstream)] + 2
    assert env.metric("fqdn_policy_set_elements", family="ipv4") == 1  # pod . google . tcp . 443
    assert env.metric("fqdn_policy_answer_hold_seconds_count") == 1
    assert env.metric("fqdn_policy_dns_responses_total", rcode="NOERROR") == 2
    assert env.metric("fqdn_policy_ready") == 1
    # a connect the policy chain drops is counted for its pod
    assert env.tcp("pod-a", "198.51.100.20", 443) == "timeout"
    denied = ("fqdn_policy_denied_connections_total", {"pod": POD, "mode": "enforce"})
    wait_for(lambda: env.metric(denied[0], **denied[1]) == 1, 3, "the drop counted")


def test_readyz_fails_while_the_table_is_missing_and_returns_once_repaired(agent_lab):
    env = agent_lab
    env.start_agent("--watchdog-interval", "0.2")
    assert env.http("/readyz") == (200, "ready\n")
    # Delete the table and put a conflicting one in its place, so the watchdog's repair fails (the
    # set's key type differs) and the agent stays unrepaired until the conflict is removed.
    env.lab.run(
        "node",
        [
            "nft",
            "delete table inet fqdn_policy; add table inet fqdn_policy; "
            "add set inet fqdn_policy allow_v4 { type ipv4_addr; }",
        ],
    )
    wait_for(lambda: env.http("/readyz")[0] == 503, 3, "readyz 503")
    _status, body = env.http("/readyz")
    assert "nftables table or chain missing" in body, body
    assert env.http("/healthz") == (200, "ok\n")  # the loop still turns: alive, not ready
    wait_for(lambda: env.has_log("enforcer.repair_failed"), 3, "a failed repair")
    assert env.metric("fqdn_policy_repairs_total", result="failed") >= 1
    assert env.metric("fqdn_policy_ready") == 0
    env.lab.run("node", ["nft", "delete", "table", "inet", "fqdn_policy"])
    wait_for(lambda: env.http("/readyz")[0] == 200, 3, "readyz 200 after the repair")
    assert env.metric("fqdn_policy_repairs_total", result="ok") >= 1


def test_readyz_fails_while_the_upstream_is_dead_and_returns_when_it_answers(agent_lab):
    env = agent_lab
    env.start_agent("--watchdog-interval", "0.2", "--upstream-timeout", "0.3", "--attempts", "1")
    assert env.http("/readyz") == (200, "ready\n")
    env.internet.stop()
    assert env.dns("pod-a", "www.google.com")["rcode"] == "SERVFAIL"
    wait_for(lambda: env.http("/readyz")[0] == 503, 3, "readyz 503")
    assert "no upstream answered in the last 10 s" in env.http("/readyz")[1]
    assert env.metric("fqdn_policy_errors_total", kind="upstream_timeout") >= 1
    assert env.metric("fqdn_policy_dns_responses_total", rcode="SERVFAIL") >= 1
    env.internet.start()
    answer = env.dns("pod-a", "www.google.com")
    # This step failed intermittently in full-suite runs (root cause not found yet): say what the
    # agent and the upstream did when it does.
    assert answer["rcode"] == "NOERROR", (answer, env.logs()[-15:], env.internet.log()[-2000:])
    wait_for(lambda: env.http("/readyz")[0] == 200, 3, "readyz 200 once the upstream answers")


def test_a_taken_metrics_port_refuses_to_start(agent_lab):
    env = agent_lab
    holder = env.lab.popen(  # a listener without SO_REUSEPORT, as another exporter would have
        "node",
        [
            sys.executable,
            "-c",
            "import socket, time; s = socket.create_server(('127.0.0.1', 9153)); time.sleep(60)",
        ],
    )
    wait_for(lambda: "9153" in env.lab.run("node", ["ss", "-Htln", "sport = :9153"]).stdout, 5, "holder")
    result = env.lab.run(
        "node",
        [
            AGENT,
            "run",
            "--policy",
            str(env.policy_file),
            "--listen",
            PROXY_V4,
            "--upstream",
            "198.51.100.53:53",
        ],
        check=False,
        timeout=20,
    )
    holder.kill()
    assert result.returncode == 3
    assert "cannot serve metrics on 127.0.0.1:9153" in result.stderr


def test_public_metrics_serve_metrics_only_while_state_and_explain_stay_local(agent_lab):
    """--public-metrics on the node's pod-facing address: reachable from a pod (as from the cluster's
    Prometheus), with /metrics only; /state and /explain answer on loopback only."""
    env = agent_lab
    env.start_agent("--public-metrics", "10.244.1.1:9154")
    status, body = env.http("/metrics", "10.244.1.1:9154", ns="pod-b")
    assert status == 200 and "fqdn_policy_ready 1.0" in body
    for path in ("/state", f"/explain?pod={POD}&host=www.google.com", "/healthz", "/readyz"):
        status, body = env.http(path, "10.244.1.1:9154", ns="pod-b")
        assert status == 404 and "try /metrics" in body, (path, status, body)
    # The local listener is loopback only: nothing of it answers from a pod, and all of it locally.
    assert env.http("/state", "10.244.1.1:9153", ns="pod-b")[0] == 0
    assert env.http("/state")[0] == 200
    assert env.http(f"/explain?pod={POD}&host=www.google.com")[0] == 200


def test_metrics_off_serves_nothing(agent_lab):
    env = agent_lab
    env.start_agent("--metrics", "off")
    result = env.lab.run("node", ["ss", "-Htln", "sport = :9153"])
    assert result.stdout.strip() == ""


def test_status_lists_what_the_kernel_allows_by_pod(agent_lab):
    env = agent_lab
    env.start_agent("--refresh-slack", "0")  # exact timeouts: LEFT is the TTL minus the seconds gone
    env.dns("pod-a", "www.google.com")
    env.dns("pod-a", "www.google.com", "AAAA")
    table = env.cli("status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "agent at http://127.0.0.1:9153: ready" in lines[0]
    assert lines[1].split() == ["POD", "POD", "ADDRESS", "DESTINATION", "PORT", "LEFT", "NAME"]
    rows = [line.split() for line in lines[2:]]
    assert rows[0][:4] == [POD, "10.244.1.10", GOOGLE, "tcp/443"] and rows[0][5] == "www.google.com"
    assert rows[1][:4] == [POD, "2001:db8:244::10", "2001:db8:100::10", "tcp/443"]
    assert rows[0][4].startswith(("4m", "5m0"))  # 300 s TTL, a few seconds gone
    doc = json.loads(env.cli("status", "-o", "json").stdout)
    (pod,) = doc["pods"]
    assert pod["pod"] == POD and pod["policies"] == ["default/allow-out-fqdnnp"]
    first = pod["allowed"][0]
    assert {k: first[k] for k in ("pod_ip", "destination", "name", "protocol", "port")} == {
        "pod_ip": "10.244.1.10",
        "destination": GOOGLE,
        "name": "www.google.com",
        "protocol": "tcp",
        "port": 443,
    }
    assert 250 < first["remaining_s"] <= 300
    assert doc["agent"]["reachable"] is True and doc["elements"] == 2


def test_status_without_the_agent_lists_the_kernel_alone_then_fails_without_a_table(agent_lab):
    env = agent_lab
    env.start_agent()
    env.dns("pod-a", "www.google.com")
    assert env.stop_agent() == 0  # the table stays
    result = env.cli("status", "-o", "json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["agent"]["reachable"] is False and "kernel's sets alone" in doc["agent"]["note"]
    (pod,) = doc["pods"]
    assert pod["pod"] is None and pod["ips"] == ["10.244.1.10"]
    assert pod["allowed"][0]["name"] == "www.google.com"
    assert "(unknown pod)" in env.cli("status").stdout
    assert env.cli("teardown").returncode == 0
    result = env.cli("status")
    assert result.returncode == 3 and "cannot read table inet fqdn_policy" in result.stderr


def test_explain_through_the_agent(agent_lab):
    env = agent_lab
    env.start_agent()
    ask = lambda *a: env.cli("explain", "--pod", POD, *a)  # noqa: E731
    before = ask("--host", "www.google.com", "--port", "443")
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith(
        "allowed: www.google.com on tcp/443 is allowed by default/allow-out-fqdnnp#egress[0] (www.google.com)"
    )
    assert "in the sets now: nothing for www.google.com" in before.stdout
    env.dns("pod-a", "www.google.com")
    after = ask("--host", "www.google.com", "--port", "443", "-o", "json")
    doc = json.loads(after.stdout)
    assert doc["verdict"] == "allowed" and doc["source"] == "the agent at http://127.0.0.1:9153"
    assert [e["destination"] for e in doc["in_sets"]["elements"]] == [GOOGLE]
    port = ask("--host", "www.google.com", "--port", "80")
    assert port.returncode == 4 and port.stdout.startswith("port-not-allowed:")
    assert "rule default/allow-out-fqdnnp#egress[0] (www.google.com) opens tcp/443" in port.stdout
    name = ask("--host", "www.cloudflare.com")
    assert name.returncode == 4 and name.stdout.startswith("name-not-allowed:")
    assert "denied by a silent drop: the connect times out" in name.stdout
    other = env.cli("explain", "--pod", "default/other", "--host", "www.cloudflare.com")
    assert other.returncode == 0 and other.stdout.startswith("not-enforced:")
    ghost = env.cli("explain", "--pod", "default/ghost", "--host", "www.google.com")
    assert ghost.returncode == 5 and ghost.stdout.startswith("unknown-pod:")


def test_explain_through_an_agent_that_rejects(agent_lab):
    env = agent_lab
    env.start_agent("--reject")
    name = env.cli("explain", "--pod", POD, "--host", "www.cloudflare.com", "-o", "json")
    assert name.returncode == 4 and json.loads(name.stdout)["on_deny"] == "reject"


def test_explain_from_a_file_and_without_an_agent(agent_lab):
    env = agent_lab
    no_agent = env.cli("explain", "--pod", POD, "--host", "www.google.com")
    assert no_agent.returncode == 3 and "pass --policy FILE" in no_agent.stderr
    from_file = env.cli("explain", "--pod", POD, "--host", "www.google.com", "--policy", str(env.policy_file))
    assert from_file.returncode == 0 and f"(policy from file {env.policy_file})" in from_file.stdout
    assert "in the sets now: unknown (cannot read the table" in from_file.stdout  # no agent ran here
    bad = env.policy_file.with_name("bad.yaml")
    bad.write_text(env.policy_file.read_text().replace("protocol: TCP", "protocol: TCPP"))
    invalid = env.cli("explain", "--pod", POD, "--host", "www.google.com", "--policy", str(bad))
    assert invalid.returncode == 1 and "'TCPP' is not one of" in invalid.stderr
    usage = env.cli("explain", "--pod", POD, "--host", "www.google.com", "--port", "0")
    assert usage.returncode == 2
