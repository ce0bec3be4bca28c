"""verify-sni on the policy and table side: which grants are verified, where their elements go, and
that the kernel holds them as the agent writes and lists them."""

from __future__ import annotations

import json
import os
import shutil
import textwrap

import pytest

from fqdn_policy.enforcer import ruleset, sniruleset
from fqdn_policy.enforcer.elementwire import element_key
from fqdn_policy.enforcer.inventory import parse_element
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.model import SNI, grant_text, verified_grants
from fqdn_policy.policy.spec.documents import InvalidDocument, policy_from_document
from fqdn_policy.sources.fileloader import load_text
from tests.lab.unshared import run_unshared


def policy(annotation: str | None, ports: list[dict] | None = None) -> str:
    notes = f"\n  annotations:\n    fqdn.policy.dev/verify-sni: {annotation!r}" if annotation else ""
    ports_text = ("\n    ports: " + json.dumps(ports)) if ports else ""
    return f"""
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata:
  name: p
  namespace: default{notes}
spec:
  podSelector: {{matchLabels: {{app: c}}}}
  egress:
  - matches: [{{name: good.example}}]{ports_text}
---
apiVersion: v1
kind: Pod
metadata: {{name: c, namespace: default, labels: {{app: c}}}}
status: {{podIP: 10.244.1.10}}
"""


def grants_of(text: str) -> frozenset:
    client = PolicyIndex(load_text(text)).client("10.244.1.10")
    return client.rules.match("good.example").grants


def test_a_verifying_rule_grants_verified_tcp_and_no_quic():
    assert verified_grants(frozenset({(None, None)})) == {(SNI, None)}
    assert verified_grants(frozenset({("tcp", 443), ("udp", 443), ("udp", 53), ("sctp", 9)})) == {
        (SNI, 443),
        ("udp", 53),
        ("sctp", 9),
    }
    assert grant_text((SNI, 443)) == "tcp/443 verified" and grant_text((SNI, None)) == "tcp/any verified"


def test_the_annotation_turns_a_policys_grants_into_verified_ones():
    assert grants_of(policy(None)) == {(None, None)}
    assert grants_of(policy("false")) == {(None, None)}
    assert grants_of(policy("true")) == {(SNI, None)}
    tcp_443 = [{"protocol": "TCP", "port": 443}]
    assert grants_of(policy("true", tcp_443)) == {(SNI, 443)}


def test_the_annotation_takes_true_or_false_only():
    doc = {
        "apiVersion": "networking.gke.io/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "metadata": {"name": "p", "annotations": {"fqdn.policy.dev/verify-sni": "yes"}},
        "spec": {"podSelector": {}, "egress": [{"matches": [{"name": "a.example"}]}]},
    }
    with pytest.raises(InvalidDocument, match="verify-sni"):
        policy_from_document(doc)


def test_verified_elements_have_sets_of_their_own_keyed_without_a_protocol():
    element = ("10.244.1.10", "198.51.100.10", SNI, 443)
    assert ruleset.element_set_name(element) == "sni_v4_port"
    assert ruleset.element_set_name(("2001:db8:244::10", "2001:db8:100::10", SNI, None)) == "sni_v6"
    assert element_key(element) == bytes([10, 244, 1, 10, 198, 51, 100, 10, 1, 187, 0, 0])
    listed = {"elem": {"val": {"concat": ["10.244.1.10", "198.51.100.10", 443]}, "timeout": 60}}
    assert parse_element(listed, verifying=True).element == element
    assert {"sni_v4", "sni_v4_port", "sni_v6", "sni_v6_port"} <= set(ruleset.allow_set_names())


def test_without_verify_sni_the_forward_chain_is_what_it_was_and_verified_elements_are_never_looked_up():
    commands = ruleset.base_ruleset("t", mark=2)
    rules = [c["add"]["rule"] for c in commands if "rule" in c.get("add", {})]
    assert not any(r["chain"] in sniruleset.CHAINS for r in rules)
    assert "sni_" not in json.dumps([r for r in rules if r["chain"] != "forward"])
    assert "sni_" not in json.dumps([r for r in rules if r["chain"] == "forward"])
    on = [c["add"]["rule"] for c in ruleset.base_ruleset("t", verify_sni=True) if "rule" in c.get("add", {})]
    assert sum(r["chain"] == "forward" for r in on) == sum(r["chain"] == "forward" for r in rules) + 4


def test_without_the_queue_statement_the_check_drops_and_says_why():
    rules = [c["add"]["rule"] for c in sniruleset.check_chain("t", None)]
    assert rules[-1]["expr"] == [{"counter": None}, {"drop": None}]
    assert "CONFIG_NFT_QUEUE" in rules[-1]["comment"]
    queued = [c["add"]["rule"] for c in sniruleset.check_chain("t", 4054)]
    assert queued[-1]["expr"] == [{"queue": {"num": 4054}}]  # no bypass: fail closed


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a netns")
def test_the_kernel_takes_the_verify_sni_chains_and_holds_verified_elements_as_written():
    script = """
    import json
    from fqdn_policy.enforcer.elementsocket import ElementSocket
    from fqdn_policy.enforcer.elementwire import ElementChange
    from fqdn_policy.enforcer.inventory import allow_elements
    from fqdn_policy.enforcer.nft import Nft
    from fqdn_policy.enforcer.ruleset import base_ruleset, element_commands
    from fqdn_policy.policy.state.elements import ElementWrite
    nft = Nft()
    nft.run(base_ruleset("t", mark=2, verify_sni=True))
    writes = [ElementWrite(("10.244.1.10", "198.51.100.10", "sni", 443), 60, 0.0, "good.example"),
              ElementWrite(("2001:db8:244::10", "2001:db8:100::10", "sni", None), 60, 0.0, "good.example")]
    ElementSocket().write([ElementChange("t", (writes[0],))])
    nft.run(element_commands("t", writes[1:]))
    print(json.dumps(sorted([list(e.element), e.name] for e in allow_elements(nft, "t"))))
    nft.run(base_ruleset("t", mark=2))  # verify-sni off again: the chains are emptied in place
    """
    done = run_unshared(textwrap.dedent(script))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        [["10.244.1.10", "198.51.100.10", "sni", 443], "good.example"],
        [["2001:db8:244::10", "2001:db8:100::10", "sni", None], "good.example"],
    ]
