import pytest

from fqdn_policy.policy.model import IpBlockRule, Pod
from fqdn_policy.policy.spec.documents import InvalidDocument
from fqdn_policy.policy.spec.networkpolicy import (
    ipblock_elements,
    network_policy_from_document,
    subtract,
)
from fqdn_policy.sources.fileloader import PolicyFileError, load_text


def netpol(spec, name="np", namespace="default"):
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {}, **spec},
    }


@pytest.mark.parametrize(
    ("cidr", "excepts", "want"),
    [
        ("203.0.113.0/24", [], ["203.0.113.0/24"]),
        ("203.0.113.0/24", ["203.0.113.0/25"], ["203.0.113.128/25"]),
        ("203.0.113.0/24", ["203.0.113.128/26"], ["203.0.113.0/25", "203.0.113.192/26"]),
        ("203.0.113.0/24", ["203.0.113.0/23"], []),
        ("203.0.113.0/24", ["198.51.100.0/24", "2001:db8::/32"], ["203.0.113.0/24"]),
        ("203.0.113.5/24", [], ["203.0.113.0/24"]),  # host bits are ignored, as Kubernetes does
        ("2001:db8::/32", ["2001:db8:8000::/33"], ["2001:db8::/33"]),
    ],
)
def test_except_ranges_are_subtracted_into_the_fewest_cidrs(cidr, excepts, want):
    assert subtract(cidr, excepts) == want


def test_ipblock_rule_with_ports_and_except():
    np = network_policy_from_document(
        netpol(
            {
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.0/25"]}}],
                        "ports": [{"port": 443}, {"protocol": "UDP", "port": 1000, "endPort": 2000}],
                    }
                ],
            }
        )
    )
    assert np.rules == (IpBlockRule(("203.0.113.128/25",), (("tcp", 443, 443), ("udp", 1000, 2000))),)
    assert np.ignored == ()


def test_rule_without_peers_allows_every_destination_and_without_ports_every_port():
    np = network_policy_from_document(netpol({"egress": [{}]}))
    assert np.rules == (IpBlockRule(("0.0.0.0/0", "::/0"), ()),)
    np = network_policy_from_document(netpol({"egress": [{"ports": [{"protocol": "UDP"}]}]}))
    assert np.rules[0].ports == (("udp", 0, 65535),)


def test_ingress_only_policies_compose_nothing():
    np = network_policy_from_document(netpol({"policyTypes": ["Ingress"], "egress": [{}]}))
    assert np.rules == ()
    np = network_policy_from_document(netpol({"ingress": [{}]}))  # no policyTypes, no egress
    assert np.rules == ()


def test_selector_peers_and_named_ports_are_reported_not_composed():
    np = network_policy_from_document(
        netpol(
            {
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                    {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": "https"}]},
                    {
                        "to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}],
                        "ports": [{"port": "https"}, {"port": 8443}],
                    },
                ]
            }
        )
    )
    # A rule whose only port is named composes nothing: allowing every port would be more than it says.
    assert np.rules == (IpBlockRule(("198.51.100.0/24",), (("tcp", 8443, 8443),)),)
    assert np.ignored == (
        "egress[0].to[0]: podSelector peers are not composed (pod addresses)",
        "egress[1].ports[0]: named port 'https' is not composed",
        "egress[2].ports[0]: named port 'https' is not composed",
    )


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"egress": [{"to": [{"ipBlock": {"cidr": "nope"}}]}]}, "spec.egress[0].to[0].ipBlock.cidr", "CIDR"),
        ({"egress": [{"ports": [{"protocol": "ICMP"}]}]}, "spec.egress[0].ports[0].protocol", "one of"),
        ({"egress": [{"ports": [{"port": 0}]}]}, "spec.egress[0].ports[0].port", "1-65535"),
        (
            {"egress": [{"ports": [{"port": 90, "endPort": 80}]}]},
            "spec.egress[0].ports[0].endPort",
            "no greater",
        ),
        ({"egress": [{"ports": [{"port": 1.5}]}]}, "spec.egress[0].ports[0].port", "port number or"),
        ({"podSelector": {"matchLabel": {}}}, "spec.podSelector.matchLabel", "unknown field"),
    ],
)
def test_invalid_network_policies_name_the_field(spec, field, message):
    with pytest.raises(InvalidDocument) as caught:
        network_policy_from_document(netpol(spec))
    assert any(p.field == field and message in p.message for p in caught.value.problems), caught.value


def test_elements_for_enforced_pods_the_policy_selects_by_family():
    np = network_policy_from_document(
        netpol(
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "egress": [
                    {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"ipBlock": {"cidr": "2001:db8::/48"}}]},
                    {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"port": 5432}]},
                ],
            }
        )
    )
    web = Pod("default", "web", {"app": "web"}, ("10.244.1.10", "2001:db8:244::10"))
    other = Pod("default", "other", {"app": "other"}, ("10.244.1.11",))
    elsewhere = Pod("prod", "web", {"app": "web"}, ("10.244.2.10",))
    assert ipblock_elements([np], [web, other, elsewhere]) == {
        ("10.244.1.10", "203.0.113.0/24", None),
        ("2001:db8:244::10", "2001:db8::/48", None),
        ("10.244.1.10", "198.51.100.7/32", ("tcp", 5432, 5432)),
    }


def test_file_loader_reads_network_policies_and_their_errors():
    text = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  podSelector: {}
  egress:
  - to: [{ipBlock: {cidr: 203.0.113.0/24}}]
"""
    policy_set = load_text(text)
    assert [np.key for np in policy_set.network_policies] == ["default/db"]
    with pytest.raises(PolicyFileError) as caught:
        load_text(text.replace("203.0.113.0/24", "203.0.113.0/99"))
    assert "<policy>:8: document 1 (NetworkPolicy default/db): spec.egress[0].to[0].ipBlock.cidr" in str(
        caught.value
    )
