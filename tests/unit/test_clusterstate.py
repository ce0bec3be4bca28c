"""The pure fold of list results and watch events into a PolicySet (fqdn_policy.sources.clusterstate, fqdn_policy.sources.decode)."""

import pytest

from fqdn_policy.sources.backoff import Backoff
from fqdn_policy.sources.clusterstate import ClusterState, ObjectStore
from fqdn_policy.sources.decode import (
    NETWORK_POLICIES,
    PODS,
    POLICIES,
    decode_network_policy,
    decode_pod,
    decode_policy,
)


def policy(name="allow", app="web", match="www.example.com", ns="default"):
    return {
        "apiVersion": "fqdn.policy.dev/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1", "uid": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "egress": [{"matches": [{"name": match}]}]},
    }


def pod(name="a", ip="10.244.1.10", app="web", phase="Running", created="2026-11-26T00:00:00Z", **extra):
    meta = {"name": name, "namespace": "default", "labels": {"app": app}, "creationTimestamp": created}
    meta.update(extra.pop("meta", {}))
    status = {"phase": phase, **({"podIP": ip, "podIPs": [{"ip": ip}]} if ip else {})}
    # as in a list response: no kind or apiVersion on the item
    return {"metadata": meta, "spec": {"nodeName": "node-1", **extra}, "status": status}


def state_with(policies=(), pods=()):
    state = ClusterState([POLICIES, PODS])
    state.replace(POLICIES, [decode_policy(p) for p in policies], "10")
    state.replace(PODS, [decode_pod(p) for p in pods], "10")
    return state


def test_not_synced_until_every_resource_was_listed():
    state = ClusterState([POLICIES, PODS])
    assert not state.synced
    state.replace(POLICIES, [], "1")
    assert not state.synced
    state.replace(PODS, [], "1")
    assert state.synced


def test_list_then_events_build_the_policy_set():
    state = state_with([policy()], [pod()])
    snap = state.snapshot()
    assert [p.key for p in snap.policies] == ["default/allow"]
    assert [(p.key, p.ips) for p in snap.pods] == [("default/a", ("10.244.1.10",))]

    fold = state.apply(PODS, "ADDED", decode_pod(pod("b", "10.244.1.11")), "11")
    assert fold.changed
    fold = state.apply(PODS, "MODIFIED", decode_pod(pod("b", "10.244.1.11", app="db")), "12")
    assert fold.changed
    assert state.snapshot().pods[1].labels == {"app": "db"}
    fold = state.apply(POLICIES, "DELETED", decode_policy(policy()), "13")
    assert fold.changed and state.snapshot().policies == ()
    assert state.stores[POLICIES].resource_version == "13"


def test_an_unchanged_object_is_no_change():
    state = state_with([policy()], [pod()])
    assert not state.apply(PODS, "MODIFIED", decode_pod(pod()), "11").changed
    assert not state.replace(POLICIES, [decode_policy(policy())], "12").changed


def test_bookmark_moves_the_resource_version_only():
    state = state_with([policy()], [pod()])
    before = state.snapshot()
    fold = state.apply(PODS, "BOOKMARK", None, "99")
    assert not fold.changed and state.stores[PODS].resource_version == "99"
    assert state.snapshot() == before


def test_unknown_event_type_is_refused():
    with pytest.raises(ValueError, match="GLITCH"):
        ObjectStore().apply("GLITCH", None, "1")


def test_relist_replaces_everything_so_missed_deletes_are_caught():
    state = state_with([policy("one"), policy("two")], [pod("a"), pod("b", "10.244.1.11")])
    fold = state.replace(PODS, [decode_pod(pod("b", "10.244.1.11"))], "20")
    assert fold.changed
    assert [p.key for p in state.snapshot().pods] == ["default/b"]


def test_invalid_object_is_reported_and_skipped():
    bad = policy("bad")
    bad["spec"]["egress"][0]["ports"] = [{"protocol": "TCPP"}]
    state = ClusterState([POLICIES, PODS])
    fold = state.replace(POLICIES, [decode_policy(policy("good")), decode_policy(bad)], "5")
    assert [p.key for p in state.snapshot().policies] == ["default/good"]
    (rejected,) = fold.rejected
    assert rejected.key == "default/bad"
    assert any("'TCPP' is not one of: TCP, UDP, ALL" in p for p in rejected.problems)


def test_an_object_edited_into_an_invalid_one_keeps_its_last_valid_version():
    state = state_with([policy("p", match="www.example.com")], [pod()])
    bad = policy("p")
    bad["spec"]["podSelector"] = {"matchLabel": {"app": "web"}}  # a typo must not select every pod
    fold = state.apply(POLICIES, "MODIFIED", decode_policy(bad), "11")
    assert not fold.changed and fold.rejected[0].key == "default/p"
    assert state.snapshot().policies[0].egress[0].matchers[0].text == "www.example.com"
    # on a relist too
    fold = state.replace(POLICIES, [decode_policy(bad)], "12")
    assert len(state.snapshot().policies) == 1 and fold.rejected
    # and deleting it deletes it
    assert state.apply(POLICIES, "DELETED", decode_policy(bad), "13").changed
    assert state.snapshot().policies == ()


@pytest.mark.parametrize(
    ("change", "counts"),
    [
        ({"phase": "Succeeded"}, False),
        ({"phase": "Failed"}, False),
        ({"hostNetwork": True}, False),
        ({"terminating": True}, True),
        ({"no_ip": True}, True),
    ],
)
def test_which_pods_count(change, counts):
    kwargs = {}
    if "phase" in change:
        kwargs["phase"] = change["phase"]
    if change.get("hostNetwork"):
        kwargs["hostNetwork"] = True
    if change.get("terminating"):
        kwargs["meta"] = {"deletionTimestamp": "2026-11-26T01:00:00Z"}
    if change.get("no_ip"):
        kwargs["ip"] = None
        kwargs["phase"] = "Pending"
    state = state_with([], [pod("a", **kwargs)])
    assert [p.key for p in state.snapshot().pods] == (["default/a"] if counts else [])


def test_a_pod_that_finishes_is_removed_like_a_deleted_one():
    state = state_with([policy()], [pod("a")])
    fold = state.apply(PODS, "MODIFIED", decode_pod(pod("a", phase="Succeeded")), "11")
    assert fold.changed and state.snapshot().pods == ()


def test_a_pending_pod_gets_its_ip_later():
    state = state_with([policy()], [pod("a", ip=None, phase="Pending")])
    assert state.snapshot().pods[0].ips == ()
    state.apply(PODS, "MODIFIED", decode_pod(pod("a")), "11")
    assert state.snapshot().pods[0].ips == ("10.244.1.10",)


def test_a_reused_ip_belongs_to_the_running_pod_then_the_newer_one():
    old = pod("old", created="2026-11-26T00:00:00Z", meta={"deletionTimestamp": "2026-11-26T01:00:00Z"})
    new = pod("new", created="2026-11-25T00:00:00Z")  # older, but the terminating one loses
    state = state_with([], [old, new])
    assert {p.name: p.ips for p in state.snapshot().pods} == {"old": (), "new": ("10.244.1.10",)}
    state = state_with(
        [], [pod("x", created="2026-11-26T00:00:00Z"), pod("y", created="2026-11-26T00:00:05Z")]
    )
    assert {p.name: p.ips for p in state.snapshot().pods} == {"x": (), "y": ("10.244.1.10",)}


def test_an_invalid_pod_is_reported():
    bad = pod("a", ip="10.244.1.300")
    state = ClusterState([PODS])
    fold = state.replace(PODS, [decode_pod(bad)], "1")
    assert state.snapshot().pods == () and "status.podIP" in fold.rejected[0].problems[0]


def test_network_policies_are_carried():
    np = {
        "metadata": {"name": "web-egress", "namespace": "default"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}],
        },
    }
    state = ClusterState([POLICIES, PODS, NETWORK_POLICIES])
    state.replace(NETWORK_POLICIES, [decode_network_policy(np)], "1")
    (carried,) = state.snapshot().network_policies
    assert carried.key == "default/web-egress" and carried.rules[0].networks == ("192.0.2.0/24",)


def test_backoff_doubles_to_the_cap_with_jitter_and_resets():
    low = Backoff(initial=0.5, cap=10, rand=lambda: 0.0)
    assert [low.next_delay() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    high = Backoff(initial=0.5, cap=10, rand=lambda: 1.0)
    assert [high.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    high.reset()
    assert high.next_delay() == 0.5
    for _ in range(5000):  # a long outage never overflows
        high.next_delay()
    assert high.next_delay() == 10.0
