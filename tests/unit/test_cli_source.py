"""Choosing the policy source on the command line."""

import pytest

from fqdn_policy.cli.main import EXIT_USAGE, main
from fqdn_policy.sources.base import SourceConfigError
from fqdn_policy.sources.kubeapi import api_client, node_name

RUN = ["run", "--upstream", "192.0.2.53"]


def test_policy_and_kubernetes_are_mutually_exclusive(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main([*RUN, "--policy", str(tmp_path / "p.yaml"), "--kubernetes"])
    assert exit_.value.code == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


def test_one_source_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(RUN)
    assert exit_.value.code == EXIT_USAGE
    assert "one of the arguments --policy --kubernetes is required" in capsys.readouterr().err


def test_kubeconfig_needs_kubernetes(capsys, tmp_path):
    assert main([*RUN, "--policy", str(tmp_path / "p.yaml"), "--kubeconfig", "k"]) == EXIT_USAGE
    assert "--kubeconfig needs --kubernetes" in capsys.readouterr().err


def test_kubernetes_needs_node_name(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NODE_NAME", raising=False)
    assert main([*RUN, "--kubernetes", "--kubeconfig", str(tmp_path / "k")]) == EXIT_USAGE
    assert "NODE_NAME is not set" in capsys.readouterr().err
    assert node_name({"NODE_NAME": "n1"}) == "n1"


def test_unreadable_kubeconfig_and_missing_in_cluster_config_are_usage_errors(tmp_path, monkeypatch):
    with pytest.raises(SourceConfigError, match="cannot load kubeconfig"):
        api_client(tmp_path / "missing")
    in_pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(SourceConfigError, match="cannot load in-cluster configuration"):
        api_client(None, in_pod, tmp_path)  # no service account token here, and no ~/.kube/config
