"""Warnings for patterns that match more than they seem: which ones, with which example, and that they
reach `fqdn-policy check` and the file source's log named as errors are (file, line, document, field)."""

import asyncio

import pytest
from structlog.testing import capture_logs

from fqdn_policy.cli.main import EXIT_OK, main
from fqdn_policy.policy.spec.breadth import pattern_warnings
from fqdn_policy.sources.fileloader import load_text
from fqdn_policy.sources.fileloader import pattern_warnings as file_warnings
from fqdn_policy.sources.filesource import MAX_LOGGED_WARNINGS, FileSource

POLICY = """\
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: broad, namespace: team}
spec:
  podSelector: {}
  egress:
  - matches:
    - name: a.example.com
    - pattern: "www.google.*"
  - matches:
    - pattern: "*.example.com"
    - pattern: "*foobar.com"
---
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata: {name: everything}
spec:
  podSelector: {}
  egress: [{matches: [{pattern: "*"}]}]
"""


@pytest.mark.parametrize(
    ("pattern", "kinds"),
    [
        ("*", ["every name"]),
        ("www.google.*", ["last label"]),
        ("*foobar.com", ["registrable"]),
        ("x.*.com", ["registrable"]),
        ("*.*", ["last label", "registrable"]),
        ("com*", ["last label"]),
        ("*.example.com", []),
        ("**.example.com", []),
        ("a*b.example.com", []),
        ("example.com", []),
    ],
)
def test_which_patterns_warn(pattern, kinds):
    warnings = pattern_warnings(pattern)
    assert len(warnings) == len(kinds)
    for warning, kind in zip(warnings, kinds, strict=True):
        assert kind in warning and repr(pattern) in warning


def test_the_example_is_a_name_the_pattern_matches():
    (warning,) = pattern_warnings("*foobar.com")
    assert "such as 'evilfoobar.com'" in warning
    (warning,) = pattern_warnings("www.google.*")
    assert "such as 'www.google.evil'" in warning


def test_names_are_never_warned_about():
    policy_set = load_text(POLICY.replace('pattern: "www.google.*"', 'name: "www.google.com"'))
    fields = [p.field for p in file_warnings(policy_set, "f.yaml")]
    assert "spec.egress[0].matches[1].pattern" not in fields


def test_warnings_name_file_line_document_and_field():
    policy_set = load_text(POLICY, "policy.yaml")  # accepted: warnings never refuse
    warnings = file_warnings(policy_set, "policy.yaml", POLICY)
    assert [(w.line, w.document, w.field) for w in warnings] == [
        (9, "document 1 (FQDNNetworkPolicy team/broad)", "spec.egress[0].matches[1].pattern"),
        (12, "document 1 (FQDNNetworkPolicy team/broad)", "spec.egress[1].matches[1].pattern"),
        (19, "document 2 (FQDNNetworkPolicy default/everything)", "spec.egress[0].matches[0].pattern"),
    ]
    lines = POLICY.splitlines()
    assert "www.google.*" in lines[8] and "*foobar.com" in lines[11] and '"*"' in lines[18]
    assert str(warnings[0]).startswith("policy.yaml:9: document 1 (FQDNNetworkPolicy team/broad): ")
    # without the text (the agent's reloads): no line, the document by kind and key
    first = file_warnings(policy_set, "policy.yaml")[0]
    assert (first.line, first.document) == (None, "FQDNNetworkPolicy team/broad")


def test_check_prints_the_warnings_and_still_accepts(tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    assert main(["check", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"{path}: OK: 2 policies, 0 pods, 3 warnings\n"
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"warning: {path}:") for line in lines)
    assert "'*foobar.com' has '*' in '*foobar', the registrable label" in lines[1]


def test_the_file_source_logs_one_bounded_line_per_load(tmp_path):
    path = tmp_path / "policy.yaml"
    many = "\n---\n".join(
        POLICY.split("---\n")[1].replace("name: everything", f"name: p{i}")
        for i in range(MAX_LOGGED_WARNINGS + 5)
    )
    path.write_text(POLICY + "---\n" + many)

    async def scenario():
        source = FileSource(path, watch_interval=0.02)
        await source.first()
        source.reload("SIGHUP")
        await asyncio.wait_for(source.next(), 2)

    with capture_logs() as logs:
        asyncio.run(scenario())
    lines = [e for e in logs if e["event"] == "policy.warnings"]
    assert len(lines) == 2  # the start and the reload, one line each
    assert lines[0]["count"] == 3 + MAX_LOGGED_WARNINGS + 5
    assert len(lines[0]["warnings"]) == MAX_LOGGED_WARNINGS
    assert lines[0]["warnings"][0].startswith(f"{path}: FQDNNetworkPolicy team/broad: spec.egress[0]")
    assert lines[0]["file"] == str(path) and lines[0]["log_level"] == "warning"
