"""The DNS redirect: pods' queries to the cluster DNS service go to this node's proxy instead.

Its own table (`inet fqdn_policy_dns`), apart from the enforcement table, because the two live
differently: enforcement stays when the agent stops (allowed flows keep working), the redirect goes
(pods then ask the cluster DNS directly: resolution fails open, while nothing new gets allowed).

    chain prerouting (type nat, hook prerouting, priority dstnat - 10)
        ip daddr SERVICE udp dport 53 dnat ip to PROXY:53   comment "fqdn-policy dns redirect owner=TOKEN"
        ip daddr SERVICE tcp dport 53 dnat ip to PROXY:53   comment ...

Priority dstnat - 10 runs before kube-proxy's nat PREROUTING (dstnat, iptables or nftables): the kernel
consults NAT chains only for a connection's first packet and stops at the first that binds it
(nf_nat_inet_fn), so this DNAT wins over the service's own DNAT to a DNS pod.

Ownership during a rolling update: two agents run side by side (SO_REUSEPORT on the same listen
address). Each start rewrites the chain with its own token in the rules' comments: the last starter
owns the redirect. An agent that stops removes the table only if its own rules are still there, by
deleting them by handle in the same transaction as the table: if a newer agent replaced them, the
handles are gone, the kernel refuses the whole transaction, and the newer agent's redirect stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fqdn_policy.enforcer.ruleset import FAMILY, Command

DEFAULT_DNS_TABLE = "fqdn_policy_dns"
CHAIN = "prerouting"
# NF_IP_PRI_NAT_DST (-100) is kube-proxy's; lower runs first.
PRIORITY = -110
OWNER_PREFIX = "fqdn-policy dns redirect owner="
PROTOCOLS = ("udp", "tcp")


@dataclass(frozen=True, slots=True)
class Redirect:
    """Queries to `service` (the cluster DNS address pods have in resolv.conf) go to `target`."""

    service: tuple[str, int]
    target: tuple[str, int]

    @property
    def version(self) -> int:
        return 6 if ":" in self.service[0] else 4


def owner_comment(token: str) -> str:
    return OWNER_PREFIX + token


def _rule(table: str, redirect: Redirect, proto: str, token: str) -> Command:
    ip = "ip6" if redirect.version == 6 else "ip"
    host, port = redirect.service
    target_host, target_port = redirect.target
    expr: list[dict[str, Any]] = [
        {"match": {"op": "==", "left": {"payload": {"protocol": ip, "field": "daddr"}}, "right": host}},
        {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": port}},
        {"dnat": {"family": ip, "addr": target_host, "port": target_port}},
    ]
    return {
        "add": {
            "rule": {
                "family": FAMILY,
                "table": table,
                "chain": CHAIN,
                "expr": expr,
                "comment": owner_comment(token),
            }
        }
    }


def install_commands(table: str, redirects: Iterable[Redirect], token: str) -> list[Command]:
    """Create or take over the table: one transaction, so pods never see a moment without a redirect."""
    cmds: list[Command] = [
        {"add": {"table": {"family": FAMILY, "name": table}}},
        {
            "add": {
                "chain": {
                    "family": FAMILY,
                    "table": table,
                    "name": CHAIN,
                    "type": "nat",
                    "hook": "prerouting",
                    "prio": PRIORITY,
                    "policy": "accept",
                }
            }
        },
        {"flush": {"chain": {"family": FAMILY, "table": table, "name": CHAIN}}},
    ]
    for redirect in redirects:
        cmds += [_rule(table, redirect, proto, token) for proto in PROTOCOLS]
    return cmds


def rule_owners(rules: Iterable[dict[str, Any]]) -> dict[int, str]:
    """handle -> owner token of the chain's rules (as `list chain` prints them, with handles)."""
    owners: dict[int, str] = {}
    for rule in rules:
        comment = rule.get("comment", "")
        if comment.startswith(OWNER_PREFIX) and "handle" in rule:
            owners[int(rule["handle"])] = comment[len(OWNER_PREFIX) :]
    return owners


def redirects_in(rules: Iterable[dict[str, Any]]) -> dict[int, Redirect]:
    """handle -> Redirect of the chain's DNAT rules, read back from `list chain` (with handles)."""
    found: dict[int, Redirect] = {}
    for rule in rules:
        service: tuple[str, int] | None = None
        host: str | None = None
        for expr in rule.get("expr", []):
            match = expr.get("match", {})
            field = match.get("left", {}).get("payload", {}).get("field")
            if field == "daddr":
                host = str(match["right"])
            elif field == "dport" and host is not None:
                service = (host, int(match["right"]))
            elif "dnat" in expr and service is not None and "handle" in rule:
                target = (str(expr["dnat"]["addr"]), int(expr["dnat"]["port"]))
                found[int(rule["handle"])] = Redirect(service=service, target=target)
    return found


def remove_commands(table: str, handles: Iterable[int]) -> list[Command]:
    """Delete the table, but only while these rules exist: a missing handle fails the transaction."""
    cmds: list[Command] = [
        {"delete": {"rule": {"family": FAMILY, "table": table, "chain": CHAIN, "handle": handle}}}
        for handle in handles
    ]
    return [*cmds, {"delete": {"table": {"family": FAMILY, "name": table}}}]
