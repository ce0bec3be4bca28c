"""Runs every row of cases.yaml against the real agent; each row is one test, named by its id."""

import json
import signal
import time

import pytest

from tests.conformance.conftest import load_cases
from tests.e2e.agentlab import AgentLab, wait_for

pytestmark = pytest.mark.netns

CASES = load_cases()["cases"]
DROP_TIMEOUT = 0.5


def policy_documents(case: dict) -> list[dict]:
    policies = case.get("policies") or [{"egress": case["egress"]}]
    return [
        {
            "apiVersion": "networking.gke.io/v1alpha1",
            "kind": "FQDNNetworkPolicy",
            "metadata": {"name": f"{case['id']}-{i}", "namespace": p.get("namespace", "default")},
            "spec": {
                "podSelector": p.get("selector", {"matchLabels": {"app": "curl-client"}}),
                "egress": p["egress"],
            },
        }
        for i, p in enumerate(policies)
    ]


def pods() -> list[dict]:
    def pod(name, labels, v4, v6):
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "status": {"podIPs": [{"ip": v4}, {"ip": v6}]},
        }

    return [
        pod("pod-a", {"app": "curl-client", "tier": "web"}, "10.244.1.10", "2001:db8:244::10"),
        pod("pod-b", {"app": "other", "tier": "web"}, "10.244.1.11", "2001:db8:244::11"),
    ]


def load_policy(env: AgentLab, case: dict) -> None:
    loaded = env.count_log("policy.loaded")
    env.write_policy([*policy_documents(case), *pods()])
    env.agent.send_signal(signal.SIGHUP)
    wait_for(lambda: env.count_log("policy.loaded") > loaded, 5, f"{case['id']}: policy loaded")


def connect(env: AgentLab, pod: str, target: str, proto: str) -> str:
    host, port = target.rsplit(":", 1)
    host = host.strip("[]")
    result = env.probe(pod, proto, host, port, "--timeout", str(DROP_TIMEOUT))["result"]
    return {"connected": "connected", "answered": "connected", "timeout": "dropped"}.get(result, result)


def last_decision(env: AgentLab, qname: str) -> dict:
    """Decision lines are flushed every half second: wait for the one asked about."""

    def decisions():
        return [e for e in env.logs() if e.get("event") == "dns.decision" and e.get("qname") == qname]

    wait_for(lambda: bool(decisions()), 3, f"a decision logged for {qname}")
    return decisions()[-1]


def set_destinations(env: AgentLab) -> set[str]:
    out = json.loads(env.nft("-j", "list", "table", "inet", "fqdn_policy"))
    found = set()
    for item in out["nftables"]:
        s = item.get("set")
        if s and s["name"].startswith("allow_"):
            for elem in s.get("elem", []):
                val = elem["elem"]["val"] if isinstance(elem, dict) and "elem" in elem else elem
                found.add(val["concat"][1])
    return found


def run_step(env: AgentLab, case_id: str, step: dict) -> None:
    pod = step.get("from", "pod-a")
    where = f"{case_id}: {step}"
    if "lookup" in step:
        args = ["dns", step["lookup"], step.get("type", "A"), "--server", "10.244.1.1:53"]
        if step.get("tcp"):
            args.append("--tcp")
        if "edns" in step:
            args += ["--edns", str(step["edns"])]
        answer = env.probe(pod, *args)
        expect = step.get("expect", {"rcode": "NOERROR"})
        if "rcode" in expect:
            assert answer["rcode"] == expect["rcode"], where
        if "answers" in expect:
            assert len(answer["answers"]) == expect["answers"], where
        if "tc" in expect:
            assert answer["tc"] is expect["tc"], where
        if "edns" in expect:
            assert bool(answer.get("edns")) is expect["edns"], where
    elif "connect" in step:
        assert connect(env, pod, step["connect"], step.get("proto", "tcp")) == step["expect"], where
    elif "hold" in step:
        host, port = step["hold"].rsplit(":", 1)
        result = env.probe(pod, "hold", host.strip("[]"), port, "--seconds", str(step["seconds"]))
        assert result["result"] == step["expect"], f"{where}: {result}"
    elif "sleep" in step:
        time.sleep(step["sleep"])
    elif "zone" in step:
        zone = {**env.internet.zone, **step["zone"]}
        env.internet.set_zone(zone)
    elif "log" in step:
        want = dict(step["log"])
        decision = last_decision(env, want.pop("qname"))
        for key, value in want.items():
            got = decision.get(key)
            if key == "evicted":
                got = len(got or [])
            assert got == value, f"{where}: {key} is {got!r} in {decision}"
    elif "not_in_sets" in step:
        present = set_destinations(env) & set(step["not_in_sets"])
        assert not present, f"{where}: {present} found in allow sets"
    else:
        raise AssertionError(f"unknown step {step}")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_row(conformance, case):
    conformance.ensure_agent(tuple(case.get("agent", ())))
    load_policy(conformance.env, case)
    for step in case["steps"]:
        run_step(conformance.env, case["id"], step)
