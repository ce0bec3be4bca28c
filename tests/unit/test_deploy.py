"""deploy/: every manifest is valid Kubernetes, the agent gets only what it needs, and the example
policies mean the same to the CRD's schema (a standard JSON-Schema validator) and to our loader."""

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fqdn_policy.cli.main import build_parser
from fqdn_policy.policy.spec.documents import InvalidDocument, policy_from_document

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Offline schemas shipped by kubernetes-validate; the oldest minor the manifests must work on.
KUBERNETES_VERSION = "1.33"
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [d for p in MANIFESTS for d in documents(p) if d["kind"] == kind]
    return found


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_openapi_schemas(path):
    for doc in documents(path):
        # strict: an unknown or misspelt field is an error, as `kubectl apply --validate=strict` says
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_wrong_field_would_be_caught():
    bad = copy.deepcopy(manifest("DaemonSet"))
    bad["spec"]["template"]["spec"]["hostNetworking"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_nothing_else():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def test_one_containerfile_and_it_has_what_the_agent_runs():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert [f for f in tracked.stdout.split() if Path(f).name in ("Containerfile", "Dockerfile")] == [
        "deploy/Containerfile"
    ]
    text = (DEPLOY / "Containerfile").read_text()
    assert "COPY deploy/image/packages /tmp/packages" in text  # installed from the shared list
    packages = (DEPLOY / "image" / "packages").read_text().split()
    for package in ("libnftables1", "conntrack", "iproute2"):
        assert package in packages


def test_cluster_role_grants_reads_and_only_the_event_writes_it_makes():
    rules = {
        (tuple(r["apiGroups"]), tuple(r["resources"])): r["verbs"] for r in manifest("ClusterRole")["rules"]
    }
    assert rules == {
        (("fqdn.policy.dev",), ("fqdnnetworkpolicies",)): ["list", "watch"],
        (("",), ("pods",)): ["list", "watch"],
        (("networking.k8s.io",), ("networkpolicies",)): ["list", "watch"],
        (("",), ("events",)): [
            "create",
            "patch",
        ],  # fqdn_policy/sources/eventsink.py: create, and patch the count
    }
    binding = manifest("ClusterRoleBinding")
    account = manifest("ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert binding["roleRef"]["name"] == manifest("ClusterRole")["metadata"]["name"]


def test_daemonset_runs_on_the_host_network_with_net_admin_only():
    ds = manifest("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == manifest("ServiceAccount")["metadata"]["name"]
    for container in pod["containers"] + pod["initContainers"]:
        security = container["securityContext"]
        assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
        assert security["allowPrivilegeEscalation"] is False and not security.get("privileged")
        assert "memory" in container["resources"]["limits"]
    agent, guard = pod["containers"]
    assert guard["args"][0] == "dns-guard"
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in agent["env"]
    assert "ports" not in agent  # a hostPort would stop the surge pod from scheduling beside the old one


def test_daemonset_overlaps_old_and_new_agents_and_probes_health():
    ds = manifest("DaemonSet")
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    agent = ds["spec"]["template"]["spec"]["containers"][0]
    metrics = next(a.split("=", 1)[1] for a in agent["args"] if a.startswith("--metrics="))
    host, port = metrics.rsplit(":", 1)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = agent[probe]["httpGet"]
        assert (get["host"], str(get["port"]), get["path"]) == (host, port, path)


def test_guard_watches_the_table_the_agent_writes():
    _agent, guard = manifest("DaemonSet")["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(guard["args"])
    flags = build_parser().parse_args(
        ["run", "--policy", "/dev/null", *manifest("ConfigMap")["data"]["run.flags"].split()]
    )
    assert args.command == "dns-guard" and args.dns_table == flags.dns_table


def test_configmap_flags_are_what_the_agent_parses():
    flags = manifest("ConfigMap")["data"]["run.flags"].split()
    args = build_parser().parse_args(["run", "--policy", "/dev/null", *flags])
    assert args.dns_service == [("10.96.0.10", 53)]
    assert args.listen == [("169.254.20.53", 1053)]
    agent = manifest("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in agent["volumeMounts"] if m["name"] == "flags")
    assert f"@{mount['mountPath']}/run.flags" in agent["args"]


def test_flag_file_is_read_by_the_cli(tmp_path):
    flags = tmp_path / "run.flags"
    flags.write_text(manifest("ConfigMap")["data"]["run.flags"])
    args = build_parser().parse_args(["run", "--policy", "/dev/null", f"@{flags}"])
    assert args.exempt == ["10.96.0.0/12", "10.244.0.0/16"]


# -- example policies -----------------------------------------------------------------------------

CRD_SCHEMA = documents(DEPLOY / "crd.yaml")[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def strict_fields(node: Any) -> Any:
    """The API server's unknown-field handling, which JSON Schema lacks: a structural schema's objects
    admit only their declared properties (pruned, or refused under fieldValidation=Strict, kubectl's
    default since 1.27). Metadata is the API server's own and stays open."""
    if isinstance(node, list):
        return [strict_fields(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_fields(v) for k, v in node.items()}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_refuses(doc: dict[str, Any]) -> bool:
    try:
        jsonschema.Draft4Validator(strict_fields(CRD_SCHEMA)).validate(doc)
    except jsonschema.ValidationError:
        return True
    return False


def loader_refuses(doc: dict[str, Any]) -> bool:
    try:
        policy_from_document(doc)
    except InvalidDocument:
        return True
    return False


def test_there_are_examples_including_the_articles():
    names = {documents(p)[0]["metadata"]["name"] for p in EXAMPLES}
    assert "allow-out-fqdnnp" in names and len(names) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_for_the_crd_and_the_loader(path):
    for doc in documents(path):
        assert doc["apiVersion"] == "fqdn.policy.dev/v1alpha1"
        jsonschema.Draft4Validator(strict_fields(CRD_SCHEMA)).validate(doc)
        assert policy_from_document(doc).egress


def _article() -> dict[str, Any]:
    return documents(DEPLOY / "examples" / "allow-out-fqdnnp.yaml")[0]


def _with(edit) -> dict[str, Any]:
    doc = copy.deepcopy(_article())
    edit(doc["spec"]["egress"][0])
    return doc


INVALID = {
    "bad protocol": _with(lambda r: r["ports"][0].update(protocol="TCPP")),
    "port 0": _with(lambda r: r["ports"][0].update(port=0)),
    "port 65536": _with(lambda r: r["ports"][0].update(port=65536)),
    "port as text": _with(lambda r: r["ports"][0].update(port="https")),
    "** inside a pattern": _with(lambda r: r["matches"][0].update(pattern="x.**.com")),
    "empty label": _with(lambda r: r["matches"][1].update(name="www..google.com")),
    "wildcard in a name": _with(lambda r: r["matches"][1].update(name="*.google.com")),
    "name and pattern": _with(lambda r: r["matches"][1].update(pattern="*.google.com")),
    "no matches": _with(lambda r: r.update(matches=[])),
    "misspelt field": _with(lambda r: r.update(port=[{"port": 443}])),
}


@pytest.mark.parametrize("doc", INVALID.values(), ids=INVALID.keys())
def test_invalid_policy_is_refused_by_both(doc):
    assert crd_refuses(doc)
    assert loader_refuses(doc)
