"""Connecting to the API server with the official client, and the list functions of what is watched.

Which configuration, in the order kubectl and controller-runtime use (so a kubeconfig that works with
`kubectl` works here, in a pod or outside one):
1. `--kubeconfig PATH`;
2. `$KUBECONFIG` (a list of files separated by `:`, merged as kubectl merges them);
3. in-cluster: the pod's service account, when KUBERNETES_SERVICE_HOST/PORT say the agent runs in a pod;
4. `~/.kube/config`.
The first that is given is used; a given one that fails to load is an error (never silently the next),
except in-cluster, which falls through to `~/.kube/config` as controller-runtime's does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import SERVICE_HOST_ENV_NAME, SERVICE_PORT_ENV_NAME

from fqdn_policy.policy.spec.schema import PROJECT_GROUP, VERSION
from fqdn_policy.sources.base import SourceConfigError
from fqdn_policy.sources.decode import NETWORK_POLICIES, PODS, POLICIES
from fqdn_policy.sources.reflector import ListCall

NODE_NAME_ENV = "NODE_NAME"
KUBECONFIG_ENV = "KUBECONFIG"
HOME_KUBECONFIG = Path(".kube") / "config"

FLAG, ENV, IN_CLUSTER, HOME = "--kubeconfig", "$KUBECONFIG", "in-cluster", "~/.kube/config"


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    """Where the client configuration comes from: `origin` is one of FLAG, ENV, IN_CLUSTER, HOME."""

    origin: str
    path: str | None = None  # the kubeconfig file(s); None for in-cluster

    def describe(self) -> str:
        return self.origin if self.path is None else f"{self.origin} {self.path}"


def config_choices(flag: Path | None, environ: Mapping[str, str], home: Path) -> list[ConfigChoice]:
    """The configurations to try, in order (pure: the caller loads them)."""
    if flag is not None:
        return [ConfigChoice(FLAG, str(flag))]
    if environ.get(KUBECONFIG_ENV):
        return [ConfigChoice(ENV, environ[KUBECONFIG_ENV])]
    choices = []
    if environ.get(SERVICE_HOST_ENV_NAME) and environ.get(SERVICE_PORT_ENV_NAME):
        choices.append(ConfigChoice(IN_CLUSTER))
    choices.append(ConfigChoice(HOME, str(home / HOME_KUBECONFIG)))
    return choices


def load(choice: ConfigChoice, configuration: client.Configuration) -> None:
    if choice.origin == IN_CLUSTER:
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=choice.path, client_configuration=configuration)


def api_client(
    kubeconfig: Path | None, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> tuple[client.ApiClient, ConfigChoice]:
    """A client configured from the first configuration of `config_choices` that loads."""
    environ = os.environ if environ is None else environ
    choices = config_choices(kubeconfig, environ, Path.home() if home is None else home)
    errors = []
    for choice in choices:
        configuration = client.Configuration()
        try:
            load(choice, configuration)
        except (ConfigException, OSError) as error:
            errors.append(f"cannot load {_what(choice)}: {error}")
            continue
        # The reflectors retry with their own backoff; urllib3's immediate retries would only hide failures.
        configuration.retries = False
        return client.ApiClient(configuration), choice
    raise SourceConfigError(
        "; ".join(errors) + f" (tried {', '.join(c.origin for c in choices)}: the order is --kubeconfig, "
        "$KUBECONFIG, in-cluster, ~/.kube/config)"
    )


def _what(choice: ConfigChoice) -> str:
    if choice.origin == IN_CLUSTER:
        return "in-cluster configuration"
    return f"kubeconfig {choice.path} (from {choice.origin})"


def node_name(environ: Mapping[str, str] | None = None) -> str:
    value = (environ if environ is not None else os.environ).get(NODE_NAME_ENV, "")
    if not value:
        raise SourceConfigError(
            f"{NODE_NAME_ENV} is not set: it names this node (in a DaemonSet, from the downward API "
            "fieldRef spec.nodeName), so the agent watches only the pods scheduled here"
        )
    return value


def list_calls(api: client.ApiClient, node: str, network_policies: bool = True) -> dict[str, ListCall]:
    """The client function listing (and, with watch=True, watching) each resource in all namespaces."""
    calls: dict[str, ListCall] = {
        POLICIES: functools.partial(
            client.CustomObjectsApi(api).list_cluster_custom_object, PROJECT_GROUP, VERSION, POLICIES
        ),
        PODS: functools.partial(
            client.CoreV1Api(api).list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}"
        ),
    }
    if network_policies:
        calls[NETWORK_POLICIES] = client.NetworkingV1Api(api).list_network_policy_for_all_namespaces
    return calls
