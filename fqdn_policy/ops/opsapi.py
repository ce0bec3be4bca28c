"""The agent's operator endpoints, served by ops.httpserve on the `--metrics` address, and /metrics
alone on the `--public-metrics` address.

Two listeners rather than one with paths gated by the client's address: /state and /explain say which
pod resolved what, and a listener that is only ever bound to loopback cannot leak them whatever a
request looks like, while a gate would have to tell local from remote clients correctly on every
request (behind hostNetwork, a DNAT or a proxy the peer address may not say). The public listener has
nothing to gate: it knows only /metrics (tests/e2e/test_operations.py tries both sides).

/metrics   Prometheus text format (fqdn_policy.ops.metrics)
/healthz   200 whenever the event loop that answers DNS is turning (it serves this very request)
/readyz    200 once started with the table present, a policy loaded and no sign of a dead
           upstream; else 503 with one reason per line (fqdn_policy.ops.health)
/state     JSON: pods by address, selecting policies, and every pod's live resolutions
/explain   JSON: fqdn_policy.policy.diagnose.explain for ?pod=NAMESPACE/NAME&host=NAME[&port=N&protocol=TCP]
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from fqdn_policy.enforcer import ruleset
from fqdn_policy.ops.health import Health
from fqdn_policy.ops.httpserve import Handler, Response
from fqdn_policy.ops.metrics import Later
from fqdn_policy.policy.diagnose.explain import PROTOCOLS, explain
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable

JSON = "application/json"


def json_response(status: int, body: Any) -> Response:
    return Response(status, (json.dumps(body, indent=1) + "\n").encode(), JSON)


def state(
    index: PolicyIndex | None, table: AllowTable, health: Health, nft_table: str, now: float
) -> dict[str, Any]:
    """What the agent knows that the kernel does not: who each pod address is, and what it resolved."""
    pods = []
    if index is not None:
        for pod in index.policy_set.pods:
            client = index.pod(pod.key)
            policies = [p.key for p in client.rules.policies] if client and client.rules else []
            pods.append(
                {"pod": pod.key, "ips": list(pod.ips), "enforced": bool(policies), "policies": policies}
            )
    resolutions = [
        {"pod": pod, "name": name, "address": address, "remaining_s": round(until - now, 1)}
        for pod, name, address, until in list(table.resolutions.items())
        if until > now
    ]
    problems = health.problems(now)
    return {
        "table": f"{ruleset.FAMILY} {nft_table}",
        "ready": not problems,
        "problems": problems,
        "pods": pods,
        "resolutions": resolutions,
    }


def explain_query(index: PolicyIndex | None, reject: bool, query: Mapping[str, str]) -> Response:
    if index is None:
        return json_response(503, {"error": "the agent has not loaded a policy yet"})
    pod, host = query.get("pod"), query.get("host")
    if not pod or not host:
        return json_response(400, {"error": "pod=NAMESPACE/NAME and host=NAME are required"})
    protocol = query.get("protocol", "").lower() or None
    if protocol is not None and protocol not in PROTOCOLS:
        return json_response(400, {"error": f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}"})
    port: int | None = None
    if query.get("port"):
        try:
            port = int(query["port"])
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            return json_response(400, {"error": f"port {query['port']!r} is not 1-65535"})
    verdict = explain(index, pod, host, protocol, port, reject)
    return json_response(200, verdict.to_json())


PUBLIC_PATHS = ("/metrics",)


def public_routes(local: dict[str, Handler]) -> dict[str, Handler]:
    """What the `--public-metrics` listener serves: the same handlers (one registry), fewer paths."""
    return {path: local[path] for path in PUBLIC_PATHS}


def routes(
    *,
    health: Health,
    index: Later[PolicyIndex],
    table: AllowTable,
    registry: CollectorRegistry,
    nft_table: str,
    reject: bool,
) -> dict[str, Handler]:
    """`index` is the rules in force, None until the first policy is loaded; `reject`: every enforced
    pod gets a fast failure (--reject), for /explain's verdict."""

    def metrics(_: Mapping[str, str]) -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    def healthz(_: Mapping[str, str]) -> Response:
        return Response(200, b"ok\n")

    def readyz(_: Mapping[str, str]) -> Response:
        problems = health.problems(time.monotonic())
        if problems:
            return Response(503, ("not ready:\n" + "".join(f"- {p}\n" for p in problems)).encode())
        return Response(200, b"ready\n")

    return {
        "/metrics": metrics,
        "/healthz": healthz,
        "/readyz": readyz,
        "/state": lambda _: json_response(200, state(index(), table, health, nft_table, time.monotonic())),
        "/explain": lambda query: explain_query(index(), reject, query),
    }
