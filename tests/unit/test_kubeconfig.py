"""Which client configuration `--kubernetes` uses: --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config
(kubectl's and controller-runtime's order), and `agent.ready` saying which."""

import json

import pytest
from kubernetes.config import incluster_config

from fqdn_policy.cli.main import main
from fqdn_policy.sources.base import SourceConfigError
from fqdn_policy.sources.kubeapi import ENV, FLAG, HOME, IN_CLUSTER, ConfigChoice, api_client, config_choices

IN_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def kubeconfig(path, server, context="c"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": context, "cluster": {"server": server}}],
                "users": [{"name": context, "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
                "current-context": context,
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("flag", "environ", "want"),
    [
        ("/f", {"KUBECONFIG": "/e", **IN_POD}, [ConfigChoice(FLAG, "/f")]),
        (None, {"KUBECONFIG": "/e:/e2", **IN_POD}, [ConfigChoice(ENV, "/e:/e2")]),
        (
            None,
            {"KUBECONFIG": "", **IN_POD},
            [ConfigChoice(IN_CLUSTER), ConfigChoice(HOME, "/h/.kube/config")],
        ),
        (None, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, [ConfigChoice(HOME, "/h/.kube/config")]),
        (None, {}, [ConfigChoice(HOME, "/h/.kube/config")]),
    ],
)
def test_the_order(flag, environ, want, tmp_path):
    from pathlib import Path

    assert config_choices(Path(flag) if flag else None, environ, Path("/h")) == want


def test_kubeconfig_env_is_used_outside_a_pod(tmp_path):
    path = kubeconfig(tmp_path / "env", "http://127.0.0.1:6443")
    kubeconfig(tmp_path / "home" / ".kube" / "config", "http://127.0.0.2:6443")
    client, choice = api_client(None, {"KUBECONFIG": str(path)}, tmp_path / "home")
    assert client.configuration.host == "http://127.0.0.1:6443"
    assert choice.describe() == f"$KUBECONFIG {path}"


def test_kubeconfig_env_lists_files_merged_as_kubectl_does(tmp_path):
    first = tmp_path / "first"
    first.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "second"}))
    second = kubeconfig(tmp_path / "second", "http://127.0.0.3:6443", context="second")
    client, _ = api_client(None, {"KUBECONFIG": f"{first}:{second}"}, tmp_path)
    assert client.configuration.host == "http://127.0.0.3:6443"


def test_flag_wins_over_env(tmp_path):
    flag = kubeconfig(tmp_path / "flag", "http://127.0.0.4:6443")
    env = kubeconfig(tmp_path / "env", "http://127.0.0.1:6443")
    client, choice = api_client(flag, {"KUBECONFIG": str(env)}, tmp_path)
    assert client.configuration.host == "http://127.0.0.4:6443" and choice.origin == FLAG


def test_in_cluster_before_home(tmp_path, monkeypatch):
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("sa-token")
    ca.write_text("not checked until a connection is made")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    kubeconfig(tmp_path / ".kube" / "config", "http://127.0.0.2:6443")
    client, choice = api_client(None, dict(IN_POD), tmp_path)
    assert client.configuration.host == "https://10.96.0.1:443" and choice.describe() == IN_CLUSTER


def test_a_broken_in_cluster_configuration_falls_through_to_home(tmp_path, monkeypatch):
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "no-token"))
    kubeconfig(tmp_path / ".kube" / "config", "http://127.0.0.2:6443")
    client, choice = api_client(None, dict(IN_POD), tmp_path)
    assert client.configuration.host == "http://127.0.0.2:6443" and choice.origin == HOME


def test_nothing_found_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "no-token"))
    with pytest.raises(SourceConfigError) as error:
        api_client(None, dict(IN_POD), tmp_path)
    text = str(error.value)
    assert "cannot load in-cluster configuration" in text
    assert f"cannot load kubeconfig {tmp_path}/.kube/config (from ~/.kube/config)" in text
    assert "the order is --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config" in text


def test_a_given_kubeconfig_that_fails_is_an_error_not_the_next_choice(tmp_path):
    kubeconfig(tmp_path / ".kube" / "config", "http://127.0.0.2:6443")
    with pytest.raises(SourceConfigError, match=r"cannot load kubeconfig .*missing \(from \$KUBECONFIG\)"):
        api_client(None, {"KUBECONFIG": str(tmp_path / "missing")}, tmp_path)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == "fqdn-policy 0.1.0"
