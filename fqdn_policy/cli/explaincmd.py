"""`fqdn-policy explain`: would a connection be allowed, by which rule, or why not; and is it open now.

The verdict comes from policy.diagnose.explain, over the policy in `--policy FILE` or, without it, the running
agent's (its /explain endpoint). Whether the name's addresses are in the kernel sets right now comes
from the kernel itself: a policy that allows a name opens nothing until the pod resolves it through
the proxy.

Exit codes (for scripts):
    0  allowed: a rule allows it, or no policy selects the pod (not enforced)
    1  the policy file is invalid
    2  usage error
    3  no verdict: the agent is unreachable and no --policy was given, or it refused the question
    4  would be dropped: no rule matches the name, or one does but not the port/protocol,
       or the name is not a valid DNS name
    5  the pod is unknown to the policy source
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fqdn_policy.cli.agentclient import DEFAULT_URL, AgentRefused, AgentUnreachable, get_json
from fqdn_policy.cli.exitcodes import EXIT_DROPPED, EXIT_INVALID, EXIT_OK, EXIT_RUNTIME, EXIT_UNKNOWN_POD
from fqdn_policy.cli.statuscmd import duration_text
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.inventory import allow_elements
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.policy.diagnose.explain import PROTOCOLS, Verdict, explain, grant_covers
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.model import grant_text
from fqdn_policy.settings import port_number
from fqdn_policy.sources.fileloader import PolicyFileError, load_file

EXIT_CODES = {
    Verdict.ALLOWED: EXIT_OK,
    Verdict.NOT_ENFORCED: EXIT_OK,
    Verdict.NAME_NOT_ALLOWED: EXIT_DROPPED,
    Verdict.PORT_NOT_ALLOWED: EXIT_DROPPED,
    Verdict.UNMATCHABLE_NAME: EXIT_DROPPED,
    Verdict.UNKNOWN_POD: EXIT_UNKNOWN_POD,
}


def in_sets_now(table: str, verdict: dict[str, Any]) -> dict[str, Any]:
    """The elements that let this pod reach this name's addresses on this port now, from the kernel."""
    try:
        elements = allow_elements(Nft(), table)
    except NftError as error:
        return {"readable": False, "error": error.args[0].splitlines()[0], "elements": []}
    ips = set(verdict["pod_ips"])
    protocol, port = verdict["protocol"], verdict["port"]
    found = [
        {
            "pod_ip": e.pod_ip,
            "destination": e.destination,
            "grant": grant_text(e.grant),
            "remaining_s": round(e.expires, 1),
        }
        for e in elements
        if e.pod_ip in ips and e.name == verdict["host"] and grant_covers(e.grant, protocol, port)
    ]
    return {"readable": True, "elements": found}


def render(doc: dict[str, Any]) -> str:
    lines = [f"{doc['verdict']}: {doc['reason']}"]
    if doc["pod_ips"]:
        selected = f", selected by {', '.join(doc['policies'])}" if doc["policies"] else ""
        lines.append(f"  pod: {doc['pod']} ({', '.join(doc['pod_ips'])}){selected}")
    if doc.get("on_deny") == "reject":
        lines.append("  denied with a fast failure (TCP reset / ICMP prohibited): the connect fails at once")
    elif doc.get("on_deny") == "drop":
        lines.append("  denied by a silent drop: the connect times out")
    if doc.get("ip_blocks"):
        lines.append(f"  NetworkPolicy ipBlocks also allow, by address: {', '.join(doc['ip_blocks'])}")
    if doc["verdict"] == Verdict.PORT_NOT_ALLOWED:
        for match in doc["matches"]:
            lines.append(f"  rule {match['rule']} opens {', '.join(match['grants'])}")
    sets = doc["in_sets"]
    if doc["verdict"] in (Verdict.NOT_ENFORCED, Verdict.UNKNOWN_POD):
        pass  # nothing is written for a pod no policy selects
    elif not sets["readable"]:
        lines.append(f"  in the sets now: unknown (cannot read the table: {sets['error']})")
    elif sets["elements"]:
        lines.append("  in the sets now:")
        for e in sets["elements"]:
            left = duration_text(e["remaining_s"])
            lines.append(f"    {e['pod_ip']} -> {e['destination']} {e['grant']}, {left} left")
    elif doc["verdict"] == Verdict.ALLOWED:
        lines.append(
            f"  in the sets now: nothing for {doc['host']}: the pod has not resolved it through the proxy "
            "recently, so a connection is dropped until it does"
        )
    lines.append(f"  (policy from {doc['source']})")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "explain",
        help="would a connection be allowed, by which policy and rule, or why not "
        "(exit 0 allowed, 4 dropped, 5 unknown pod; docs/operations.md)",
    )
    cmd.add_argument(
        "--pod", required=True, metavar="NAMESPACE/NAME", help="the pod (a bare NAME means namespace default)"
    )
    cmd.add_argument("--host", required=True, metavar="NAME", help="the DNS name the pod connects to")
    cmd.add_argument("--port", type=port_number, help="destination port (default: any)")
    cmd.add_argument(
        "--protocol",
        type=str.lower,
        choices=list(PROTOCOLS),
        help="tcp, udp or sctp (default tcp when --port is given)",
    )
    cmd.add_argument(
        "--policy", type=Path, help="decide from this policy file instead of asking the running agent"
    )
    cmd.add_argument("-o", "--output", choices=["text", "json"], default="text")
    cmd.add_argument(
        "--table",
        default=ruleset.DEFAULT_TABLE,
        help=f"the agent's inet table (default {ruleset.DEFAULT_TABLE})",
    )
    cmd.add_argument(
        "--agent",
        default=DEFAULT_URL,
        help=f"the agent's --metrics address, as a URL (default {DEFAULT_URL})",
    )
    cmd.set_defaults(handler=_from_args)


def _from_args(args: argparse.Namespace) -> int:
    pod = args.pod if "/" in args.pod else f"default/{args.pod}"
    return run_explain(
        pod, args.host, args.protocol, args.port, args.policy, args.agent, args.table, args.output
    )


def run_explain(
    pod: str,
    host: str,
    protocol: str | None,
    port: int | None,
    policy_file: Path | None,
    agent_url: str,
    table: str,
    output: str,
) -> int:
    if policy_file is not None:
        try:
            index = PolicyIndex(load_file(policy_file))
        except PolicyFileError as error:
            print(error, file=sys.stderr)
            return EXIT_INVALID
        verdict = explain(index, pod, host, protocol, port).to_json()
        source = f"file {policy_file}"
    else:
        params = {"pod": pod, "host": host}
        if protocol:
            params["protocol"] = protocol
        if port is not None:
            params["port"] = str(port)
        try:
            verdict = get_json(agent_url, "/explain", params)
        except (AgentUnreachable, AgentRefused) as error:
            print(f"fqdn-policy explain: {error} (or pass --policy FILE)", file=sys.stderr)
            return EXIT_RUNTIME
        source = f"the agent at {agent_url}"
    doc = {**verdict, "source": source, "in_sets": in_sets_now(table, verdict)}
    print(json.dumps(doc, indent=1) if output == "json" else render(doc))
    return EXIT_CODES[Verdict(verdict["verdict"])]
