"""`fqdn-policy status`: per pod, what the kernel allows right now, with names and time left.

The kernel is the truth for what is allowed (the allow sets, listed through libnftables; each
element's comment is the name it was resolved from). The agent adds who each pod address is, from its
/state endpoint; without it the listing is by pod address, with a note.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fqdn_policy.cli.agentclient import DEFAULT_URL, AgentRefused, AgentUnreachable, get_json
from fqdn_policy.cli.exitcodes import EXIT_OK, EXIT_RUNTIME
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.inventory import ListedElement, allow_elements
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.policy.model import grant_text


def duration_text(seconds: float) -> str:
    """`4m05s`, `2h10m`, `38s`: how long an element has left, rounded down."""
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def build_status(table: str, elements: list[ListedElement], state: dict[str, Any] | None) -> dict[str, Any]:
    """The `-o json` document: pods (each enforced pod, even with nothing allowed) and their elements."""
    pods: dict[str, dict[str, Any]] = {}
    by_ip: dict[str, dict[str, Any]] = {}
    for pod in (state or {}).get("pods", []):
        if not pod["enforced"]:
            continue
        entry = {"pod": pod["pod"], "ips": pod["ips"], "policies": pod["policies"], "allowed": []}
        pods[pod["pod"]] = entry
        for ip in pod["ips"]:
            by_ip[ip] = entry
    for listed in sorted(elements, key=lambda e: (e.pod_ip, e.name, e.destination, str(e.grant))):
        entry = by_ip.get(listed.pod_ip)
        if entry is None:  # no agent, or an address no current pod has (a deleted pod's leftovers)
            entry = by_ip[listed.pod_ip] = pods[listed.pod_ip] = {
                "pod": None,
                "ips": [listed.pod_ip],
                "policies": [],
                "allowed": [],
            }
        proto, port = listed.grant
        entry["allowed"].append(
            {
                "pod_ip": listed.pod_ip,
                "destination": listed.destination,
                "name": listed.name or None,
                "protocol": proto,
                "port": port,
                "remaining_s": round(listed.expires, 1),
            }
        )
    return {
        "table": f"{ruleset.FAMILY} {table}",
        "elements": len(elements),
        "pods": sorted(pods.values(), key=lambda p: (p["pod"] is None, p["pod"] or "", p["ips"])),
    }


def render_table(doc: dict[str, Any]) -> str:
    rows = [("POD", "POD ADDRESS", "DESTINATION", "PORT", "LEFT", "NAME")]
    for pod in doc["pods"]:
        who = pod["pod"] or "(unknown pod)"
        if not pod["allowed"]:
            rows.append((who, ", ".join(pod["ips"]), "(nothing allowed now)", "", "", ""))
        for a in pod["allowed"]:
            grant = grant_text((a["protocol"], a["port"]))
            left = duration_text(a["remaining_s"])
            rows.append((who, a["pod_ip"], a["destination"], grant, left, a["name"] or "?"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "status",
        help="per pod, what the kernel allows now, with names, ports and time left",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cmd.add_argument("-o", "--output", choices=["table", "json"], default="table")
    cmd.add_argument("--table", default=ruleset.DEFAULT_TABLE, help="the agent's inet table")
    cmd.add_argument("--agent", default=DEFAULT_URL, help="the agent's --metrics address, as a URL")
    cmd.set_defaults(handler=lambda args: run_status(args.table, args.agent, args.output))


def run_status(table: str, agent_url: str, output: str) -> int:
    try:
        elements = allow_elements(Nft(), table)
    except NftError as error:
        print(
            f"fqdn-policy status: cannot read table {ruleset.FAMILY} {table}: {error.args[0].splitlines()[0]}"
            " (is the agent running in this network namespace, as root?)",
            file=sys.stderr,
        )
        return EXIT_RUNTIME
    state: dict[str, Any] | None = None
    try:
        state = get_json(agent_url, "/state")
        agent: dict[str, Any] = {"url": agent_url, "reachable": True, "ready": state["ready"]}
        if state["problems"]:
            agent["problems"] = state["problems"]
    except (AgentUnreachable, AgentRefused) as error:
        agent = {
            "url": agent_url,
            "reachable": False,
            "note": f"{error}; listing the kernel's sets alone, by pod address",
        }
    doc = {**build_status(table, elements, state), "agent": agent}
    if output == "json":
        print(json.dumps(doc, indent=1))
        return EXIT_OK
    if agent["reachable"]:
        readiness = "ready" if agent["ready"] else "NOT READY: " + "; ".join(agent.get("problems", []))
        print(f"table {doc['table']}: {doc['elements']} allow elements; agent at {agent_url}: {readiness}")
    else:
        print(f"table {doc['table']}: {doc['elements']} allow elements; note: {agent['note']}")
    print(render_table(doc))
    return EXIT_OK
