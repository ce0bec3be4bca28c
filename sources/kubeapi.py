"""Connecting to the API server with the official client, and the list functions of what is watched."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from policy.schema import PROJECT_GROUP, VERSION
from sources.base import SourceConfigError
from sources.decode import NETWORK_POLICIES, PODS, POLICIES
from sources.reflector import ListCall

NODE_NAME_ENV = "NODE_NAME"


def api_client(kubeconfig: Path | None) -> client.ApiClient:
    """In-cluster configuration (the pod's service account) unless a kubeconfig is given."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError) as error:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration"
        raise SourceConfigError(f"cannot load {where}: {error}") from error
    # The reflectors retry with their own backoff; urllib3's immediate retries would only hide failures.
    configuration.retries = False
    return client.ApiClient(configuration)


def node_name(environ: dict[str, str] | None = None) -> str:
    value = (environ if environ is not None else dict(os.environ)).get(NODE_NAME_ENV, "")
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
