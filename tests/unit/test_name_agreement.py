"""The file loader (what `fqdn-policy check` runs), the CRD's schema, the DNS path and `explain` agree on
which names are names and what they match, for generated names with non-ASCII characters among them.

Case is folded in ASCII only (RFC 4343): characters whose Unicode lower or case fold is ASCII, such as
U+212A KELVIN SIGN ("k"), U+017F LONG S ("s") or U+FB01 LIGATURE FI ("fi"), must not pass for ASCII.
"""

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from fqdn_policy.policy.decide.decision import AnsweredLookup, decide
from fqdn_policy.policy.diagnose.explain import explain
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import PolicyFileError, load_text
from tests.unit.test_crd import crd_accepts

KELVIN = "\u212aubernetes.io"
LOOKALIKES = "\u212a\u212b\u017f\u0130\ufb01\u00e9\uff21"  # Kelvin, Angstrom, long s, dotted I, fi, e acute, full-width A
ALPHABET = "abkKsSzZ09-_" + LOOKALIKES + " *"
POD_IP = "10.244.1.10"


def policy_text(name: str) -> str:
    return f"""
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {{name: p}}
spec:
  podSelector: {{}}
  egress:
  - matches: [{{name: {name!r}}}]
    ports: [{{protocol: TCP, port: 443}}]
---
{{apiVersion: v1, kind: Pod, metadata: {{name: c}}, status: {{podIPs: [{{ip: {POD_IP}}}]}}}}
"""


def loaded_name(name: str) -> str | None:
    """The name as the loader keeps it, or None when it refuses the file."""
    try:
        policy_set = load_text(policy_text(name))
    except PolicyFileError:
        return None
    ((matcher,),) = [rule.matchers for policy in policy_set.policies for rule in policy.egress]
    return matcher.text


def wire_query(name: str) -> bytes:
    """A query for `name` as a client would send it: each label's UTF-8 octets, type A, class IN."""
    labels = name.rstrip(".").split(".")
    qname = b"".join(bytes([len(raw)]) + raw for raw in (label.encode() for label in labels)) + b"\0"
    return struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)


def dns_qname(name: str) -> str | None:
    from fqdn_policy.dnsproxy.wire import parse_query

    return parse_query(wire_query(name)).qname


labels = st.text(alphabet=ALPHABET, min_size=1, max_size=8)
names = st.builds(
    lambda parts, dot: ".".join(parts) + dot,
    st.lists(labels, min_size=1, max_size=4),
    st.sampled_from(["", "."]),
)


@settings(max_examples=200, deadline=None)
@given(name=names)
@example(name=KELVIN)
@example(name="\u017fvc.example.com")
@example(name="Kubernetes.IO.")
def test_loader_crd_and_dns_path_agree_on_what_is_a_name(name):
    loaded = loaded_name(name)
    assert (loaded is not None) is crd_accepts({"name": name}), name
    # Both refuse it, or both hold the same lower-case name, so the policy's name meets the query's.
    assert dns_qname(name) == loaded, name


@settings(max_examples=150, deadline=None)
@given(host=names)
@example(host=KELVIN)
@example(host="\ufb01le.example.com")
@example(host="KUBERNETES.io")
def test_explain_agrees_with_the_dns_path(host):
    # The policy allows what a reader folding Unicode case would take `host` for, when that is a name.
    folded = host.lower()
    index = PolicyIndex(load_text(policy_text(folded if loaded_name(folded) else "kubernetes.io")))
    lookup = AnsweredLookup(POD_IP, dns_qname(host), 1, 0, ((4, "198.51.100.10", 300),))
    decision = decide(lookup, index, AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0)), AddressGuard(), 100.0)
    verdict = explain(index, "default/c", host, "tcp", 443).verdict
    assert verdict.value == decision.outcome.value, host


patterns = st.builds(
    lambda parts, dot: ".".join(parts) + dot,
    st.lists(st.text(alphabet=ALPHABET + "**", min_size=1, max_size=8), min_size=1, max_size=4),
    st.sampled_from(["", "."]),
)


@settings(max_examples=150, deadline=None)
@given(pattern=patterns)
@example(pattern="*.\u212aubernetes.io")
def test_loader_and_crd_agree_on_what_is_a_pattern(pattern):
    text = policy_text("a.example").replace("{name: 'a.example'}", f"{{pattern: {pattern!r}}}")
    try:
        load_text(text)
        loaded = True
    except PolicyFileError:
        loaded = False
    assert loaded is crd_accepts({"pattern": pattern}), pattern


def test_check_refuses_a_look_alike_name_and_says_which_character(tmp_path, capsys):
    from fqdn_policy.cli.main import EXIT_INVALID, main

    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(KELVIN), encoding="utf-8")
    assert main(["check", str(path)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "'\\u212aubernetes.io'" in err and "U+212A KELVIN SIGN is not ASCII" in err
