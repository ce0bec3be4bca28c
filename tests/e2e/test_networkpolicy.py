"""NetworkPolicy egress ipBlocks composed with FQDN policies, against the real agent in namespaces."""

import pytest

from tests.e2e.agentlab import article_policy, lab_pods, wait_for

pytestmark = pytest.mark.netns

GOOGLE, CLOUDFLARE, API = "198.51.100.10", "198.51.100.20", "198.51.100.30"


def network_policy(egress, name="ipblocks", selector=None):
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "podSelector": selector if selector is not None else {"matchLabels": {"app": "curl-client"}},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }


def test_ipblock_with_except_and_port_opens_addresses_without_a_lookup(agent_lab):
    env = agent_lab
    env.write_policy(
        [
            article_policy(),
            *lab_pods(),
            network_policy(
                [
                    {
                        "to": [{"ipBlock": {"cidr": "198.51.100.0/27", "except": ["198.51.100.16/28"]}}],
                        "ports": [{"protocol": "TCP", "port": 80}],
                    },
                    {"to": [{"ipBlock": {"cidr": "2001:db8:100::20/128"}}]},
                ]
            ),
        ]
    )
    env.start_agent()
    assert env.tcp("pod-a", GOOGLE, 80) == "connected"  # 198.51.100.10 is in /27 minus .16/28
    assert env.tcp("pod-a", GOOGLE, 443) == "timeout"  # wrong port, and never resolved
    assert env.tcp("pod-a", CLOUDFLARE, 80) == "timeout"  # .20 is in the except range
    assert env.tcp("pod-a", "2001:db8:100::20", 443) == "connected"  # no ports: every port
    assert env.tcp("pod-a", "2001:db8:100::10", 443) == "timeout"
    # the FQDN rules still apply alongside: either kind allowing is enough
    env.dns("pod-a", "api.yourdomain.com")
    assert env.tcp("pod-a", API, 443) == "connected"


def test_reload_changes_ipblocks_and_a_network_policy_alone_enforces_nothing(agent_lab):
    env = agent_lab
    everyone = network_policy([{"to": [{"ipBlock": {"cidr": "198.51.100.20/32"}}]}], selector={})
    env.write_policy([article_policy(), *lab_pods(), everyone])
    env.start_agent()
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "connected"
    # pod-b is selected by the NetworkPolicy but by no FQDN policy: this agent does not enforce it
    assert env.tcp("pod-b", GOOGLE, 443) == "connected"
    env.write_policy([article_policy(), *lab_pods()])
    wait_for(lambda: env.has_log("policy.loaded", reason="file changed"), 3.0, "reload")
    assert env.tcp("pod-a", CLOUDFLARE, 443) == "timeout"


def test_parts_that_cannot_be_composed_are_logged(agent_lab):
    env = agent_lab
    peers = network_policy([{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}])
    env.write_policy([article_policy(), *lab_pods(), peers])
    env.start_agent()
    line = next(e for e in env.logs() if e["event"] == "networkpolicy.not_composed")
    assert line["policy"] == "default/ipblocks"
    assert line["ignored"] == ["egress[0].to[0]: podSelector peers are not composed (pod addresses)"]
    assert env.tcp("pod-a", GOOGLE, 443) == "timeout"
