"""Where policies come from: a file (standalone) or the Kubernetes API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fqdn_policy.settings import SettingError, number, positive_seconds, setting, validate
from fqdn_policy.sources.filesource import DEFAULT_WATCH_INTERVAL


@dataclass(frozen=True, slots=True)
class SourceConfig:
    policy: Path | None = setting(
        None,
        "--policy",
        "YAML file of FQDNNetworkPolicy and Pod documents (standalone mode)",
        parse=Path,
        exclusive="source",
    )
    kubernetes: bool = setting(
        False,
        "--kubernetes",
        "watch FQDNNetworkPolicies, NetworkPolicies and this node's Pods (NODE_NAME) on the API server",
        switch=True,
        exclusive="source",
    )
    kubeconfig: Path | None = setting(
        None,
        "--kubeconfig",
        "with --kubernetes: the kubeconfig file to use; without it $KUBECONFIG, then the pod's "
        "in-cluster service account, then ~/.kube/config (kubectl's order)",
        parse=Path,
    )
    watch_interval: float = setting(
        DEFAULT_WATCH_INTERVAL,
        "--watch-interval",
        "seconds between checks of the policy file",
        parse=number,
        check=positive_seconds,
    )

    def __post_init__(self) -> None:
        validate(self)
        if (self.policy is None) == (not self.kubernetes):
            raise SettingError("--policy", "exactly one of --policy and --kubernetes is needed")
        if self.kubeconfig is not None and not self.kubernetes:
            raise SettingError("--kubeconfig", "--kubeconfig needs --kubernetes")
