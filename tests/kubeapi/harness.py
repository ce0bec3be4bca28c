"""Drives a KubernetesSource built on the real client against the fake API server, in one event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fqdn_policy.policy.model import PolicySet
from fqdn_policy.sources.backoff import Backoff
from fqdn_policy.sources.base import PolicyUpdate
from fqdn_policy.sources.kubeapi import api_client, list_calls
from fqdn_policy.sources.kubesource import KubernetesSource
from tests.kubeapi.server import FakeApiServer

NODE = "node-1"


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, cap=0.4)


def make_source(
    api: FakeApiServer, tmp_path: Path, backoff: Callable[[], Backoff] = fast_backoff, **kwargs: Any
) -> KubernetesSource:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    client, _ = api_client(kubeconfig)
    return KubernetesSource(list_calls(client, NODE), backoff=backoff, **kwargs)


async def until(
    source: KubernetesSource, condition: Callable[[PolicySet], bool], seconds: float = 5.0
) -> PolicyUpdate:
    """The first update whose PolicySet satisfies `condition`."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching update within {seconds} s; state: {source.state.snapshot()}")
        update = await asyncio.wait_for(source.next(), left)
        if condition(update.policy_set):
            return update


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Server changes are made from a thread, as another client would."""
    return await asyncio.to_thread(fn, *args)


async def eventually(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.02)


def policy(name: str = "allow", app: str = "web", match: str = "www.example.com") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "egress": [{"matches": [{"name": match}]}]},
    }


def pod(name: str, ip: str, app: str = "web", node: str = NODE) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def names(policy_set: PolicySet) -> tuple[list[str], list[str]]:
    return [p.key for p in policy_set.policies], [p.key for p in policy_set.pods]
