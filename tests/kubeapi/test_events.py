"""Events through the real client against the fake API server: a refused FQDNNetworkPolicy and a
partly composed NetworkPolicy each get a Warning Event on that object, from this node's agent."""

import asyncio

import pytest

from fqdn_policy.sources import events as events_module
from fqdn_policy.sources.eventsink import EventRecorder
from fqdn_policy.sources.kubeapi import api_client
from tests.kubeapi.harness import NODE, eventually, fast_backoff, in_thread, policy
from tests.kubeapi.test_source import POLICIES, run, seed

NETWORK_POLICIES = "networkpolicies"


def make(api, tmp_path):
    from fqdn_policy.sources.kubeapi import list_calls
    from fqdn_policy.sources.kubesource import KubernetesSource

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    client, _ = api_client(kubeconfig)
    recorder = EventRecorder(client, NODE)
    source = KubernetesSource(
        list_calls(client, NODE), backoff=fast_backoff, notices=recorder.record, close_notices=recorder.close
    )
    return source, recorder


def bad_policy():
    bad = policy("bad")
    bad["spec"]["egress"][0]["ports"] = [{"protocol": "TCPP"}]
    return bad


def selector_network_policy():
    return {
        "metadata": {"name": "to-db", "namespace": "default"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
        },
    }


def events_about(api, name):
    return [e for e in api.cluster.events.values() if e["involvedObject"]["name"] == name]


def test_a_refused_policy_gets_a_warning_event_on_that_object(api, tmp_path):
    seed(api)

    async def scenario():
        source, _ = make(api, tmp_path)
        await source.first()
        try:
            await in_thread(api.cluster.put, POLICIES, bad_policy())
            await eventually(lambda: events_about(api, "bad"), 5, "the Event")
        finally:
            await source.close()

    run(scenario())
    (event,) = events_about(api, "bad")
    stored = api.cluster.objects[POLICIES]["default/bad"]
    assert event["involvedObject"] == {
        "apiVersion": "fqdn.policy.dev/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "namespace": "default",
        "name": "bad",
        "uid": stored["metadata"]["uid"],  # what `kubectl describe` matches Events on
        "resourceVersion": stored["metadata"]["resourceVersion"],
    }
    assert event["metadata"]["namespace"] == "default"
    assert event["reason"] == "PolicyRefused" and event["type"] == "Warning"
    assert "spec.egress[0].ports[0].protocol: 'TCPP' is not one of: TCP, UDP, ALL" in event["message"]
    assert "keeps enforcing the last valid version" in event["message"]
    assert event["source"] == {"component": "fqdn-policy", "host": NODE}
    assert event["count"] == 1 and event["firstTimestamp"] == event["lastTimestamp"]
    assert [m for m, *_ in api.event_requests] == ["POST"]
    assert api.event_requests[0][1] == "/api/v1/namespaces/default/events"


def test_a_network_policy_part_not_composed_gets_an_event(api, tmp_path):
    seed(api)
    api.cluster.put(NETWORK_POLICIES, selector_network_policy())  # there at the first list

    async def scenario():
        source, _ = make(api, tmp_path)
        await source.first()
        try:
            await eventually(lambda: events_about(api, "to-db"), 5, "the Event")
        finally:
            await source.close()

    run(scenario())
    (event,) = events_about(api, "to-db")
    assert event["involvedObject"]["kind"] == "NetworkPolicy"
    assert event["involvedObject"]["apiVersion"] == "networking.k8s.io/v1"
    assert event["reason"] == "NotComposed"
    assert "egress[0].to[0]: podSelector peers are not composed" in event["message"]


def test_seeing_it_again_counts_and_patches_the_same_event(api, tmp_path, monkeypatch):
    monkeypatch.setattr(events_module, "REPEAT_INTERVAL", 0.0)  # every repeat is patched
    seed(api)

    async def scenario():
        source, recorder = make(api, tmp_path)
        await source.first()
        try:
            await in_thread(api.cluster.put, POLICIES, bad_policy())
            await eventually(lambda: events_about(api, "bad"), 5, "the Event")
            again = bad_policy()
            again["metadata"]["labels"] = {"edited": "yes"}  # a MODIFIED event, refused the same way
            await in_thread(api.cluster.put, POLICIES, again)
            await eventually(lambda: recorder.sent == 2, 5, "the patch")
        finally:
            await source.close()

    run(scenario())
    (event,) = events_about(api, "bad")
    assert event["count"] == 2
    assert [(m, t) for m, _, t in api.event_requests][1] == ("PATCH", "application/merge-patch+json")


def test_an_unreachable_event_endpoint_is_logged_and_leaves_the_watches_alone(api, tmp_path):
    from structlog.testing import capture_logs

    seed(api)

    async def scenario():
        source, recorder = make(api, tmp_path)
        await source.first()
        resources = (POLICIES, "pods", NETWORK_POLICIES)
        await eventually(lambda: all(api.watches(r) for r in resources), 5, "the watches")
        await asyncio.sleep(0.2)  # past their token check
        api.token = "rotated"  # the open watches go on; every new request is refused (401)
        try:
            await in_thread(api.cluster.put, POLICIES, bad_policy())
            await eventually(lambda: recorder.failed == 1, 5, "the failed post")
        finally:
            await source.close()

    with capture_logs() as logs:
        run(scenario())
    failed = [e for e in logs if e["event"] == "kubernetes.event_failed"]
    assert failed and failed[0]["object"] == "default/bad" and "401" in failed[0]["error"]
    assert not api.cluster.events


@pytest.mark.parametrize("n", [3])
def test_many_refusals_are_rate_limited(api, tmp_path, monkeypatch, n):
    monkeypatch.setattr(events_module, "BURST", n)
    monkeypatch.setattr(events_module, "REFILL_SECONDS", 3600.0)
    seed(api)

    async def scenario():
        source, recorder = make(api, tmp_path)
        await source.first()
        try:
            for i in range(n + 4):
                bad = bad_policy()
                bad["metadata"]["name"] = f"bad-{i}"
                await in_thread(api.cluster.put, POLICIES, bad)
            await eventually(lambda: recorder.book.suppressed == 4, 5, "the suppressed notices")
            await asyncio.sleep(0.2)
        finally:
            await source.close()

    run(scenario())
    assert len(api.cluster.events) == n
