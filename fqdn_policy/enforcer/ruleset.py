"""The project's nftables table, as libnftables JSON commands (libnftables-json(5)).

One `inet` table holds everything; nothing outside it is ever touched. Layout:

    set enforced_v4 / enforced_v6      pods some policy selects (their egress is default-deny)
    set allow_v4 / allow_v6            pod . destination                      (a rule without ports)
    set allow_v4_proto / _v6_proto     pod . destination . protocol           (a protocol, any port)
    set allow_v4_port / _v6_port       pod . destination . protocol . port
    set exempt_v4 / exempt_v6          destinations never enforced (e.g. the cluster's own ranges)
    set ipblock_v4 / _v6               pod . network, from NetworkPolicy ipBlocks without ports
    set ipblock_v4_tcp / _udp / _sctp  pod . network . port range (the same for v6), with ports
    set reject_v4 / reject_v6          pods whose denied packets are rejected instead of dropped
    counter drops_unlogged             denied packets beyond the log rate limit (not logged)
    chain forward (hook forward)       established/related pass; enforced pods jump to egress_v4/v6
    chain egress_v4 / egress_v6        accept what a set allows; log the rest (rate-limited), go to deny
    chain deny_v4 / deny_v6            the verdict on the rest: reject (pods in reject_v*), drop, or,
                                       in audit mode, accept

Drop by default: the reference behaviour (GKE) drops, and a drop reveals nothing about the destination;
`--reject` and the `fqdn.policy.dev/on-deny: reject` annotation opt into a fast failure (docs/drops.md).
Sets are created with `add`, which leaves an existing set and its elements alone: a restarted agent
adopts what the previous one allowed instead of flushing it (no gap, no lost allowance).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fqdn_policy.enforcer import sniruleset
from fqdn_policy.enforcer.nftjson import FAMILY, Command, set_mark_bit
from fqdn_policy.enforcer.nftjson import field as _field
from fqdn_policy.enforcer.nftjson import match_set as _match_set
from fqdn_policy.enforcer.nftjson import rule as _rule
from fqdn_policy.enforcer.nftjson import set_ as _set
from fqdn_policy.enforcer.refresh import Refresh, latest_writes
from fqdn_policy.policy.model import SNI
from fqdn_policy.policy.spec.networkpolicy import IpBlockElement
from fqdn_policy.policy.state.elements import Element, ElementWrite

DEFAULT_TABLE = "fqdn_policy"
# filter + 5: after the iptables-nft, Calico and kube-proxy filter chains at 0 (a chain registered later at
# an equal priority runs first, so at 0 ours would run before them and they would see the guard's mark
# bit); before firewalld's at filter + 10. The guard table (enforcer.guard) hooks in just after it.
# The kernel cannot change a base chain's priority in place: changing this needs a teardown.
FORWARD_PRIORITY = 5

# An element's comment is the query name, cut to what libnftnl accepts (NFTNL_UDATA_COMMENT_MAXLEN,
# 128 bytes with the terminating NUL).
COMMENT_LENGTH = 127

_ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}
_ICMP = {4: "icmp", 6: "icmpv6"}

# Calico logs flows to NFLOG groups 1 and 2, ulogd's examples use 0-2 and Suricata 2: stay clear of them.
DEFAULT_NFLOG_GROUP = 4053
DEFAULT_LOG_RATE = 20  # denied packets logged per second (bursts of twice that); the rest only counted
LOG_PREFIX = "fqdn-policy"
UNLOGGED_COUNTER = "drops_unlogged"
ND_TYPES = (
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "nd-redirect",
)
CHAINS = ("forward", "egress_v4", "egress_v6", "deny_v4", "deny_v6", *sniruleset.CHAINS)
# NetworkPolicy port protocols. An interval set per protocol, the protocol matched by the rule: a
# concatenation with `meta l4proto` in an interval set cannot be looked up on Linux 7.2 (EOPNOTSUPP,
# seen in the VM lane with Debian sid's 7.2.13; the same lookup works on 5.10-6.18), while
# address . address . port ranges can everywhere.
IPBLOCK_PROTOCOLS = ("tcp", "udp", "sctp")


class Mode(StrEnum):
    ENFORCE = "enforce"  # denied packets are dropped (or rejected)
    AUDIT = "audit"  # denied packets are logged and accepted


@dataclass(frozen=True, slots=True)
class Denial:
    """What the chains do with a packet no set allows."""

    mode: Mode = Mode.ENFORCE
    nflog_group: int | None = DEFAULT_NFLOG_GROUP  # None: not logged
    log_rate: int = DEFAULT_LOG_RATE


def set_name(version: int, proto: str | None, port: int | None) -> str:
    if proto == SNI:
        return sniruleset.set_name(version, port)
    if proto is None:
        return f"allow_v{version}"
    if port is None:
        return f"allow_v{version}_proto"
    return f"allow_v{version}_port"


def allow_set_names() -> list[str]:
    shapes = ((None, None), ("tcp", None), ("tcp", 1), (SNI, None), (SNI, 1))
    return [set_name(v, proto, port) for v in (4, 6) for proto, port in shapes]


def _sets(table: str) -> list[Command]:
    cmds: list[Command] = []
    for v in (4, 6):
        addr = _ADDR[v]
        cmds.append(_set(table, f"enforced_v{v}", [addr], []))
        cmds.append(_set(table, f"exempt_v{v}", [addr], ["interval"]))
        cmds.append(_set(table, f"reject_v{v}", [addr], []))
        cmds.append(_set(table, f"allow_v{v}", [addr, addr], ["timeout"]))
        cmds.append(_set(table, f"allow_v{v}_proto", [addr, addr, "inet_proto"], ["timeout"]))
        port_key = [addr, addr, "inet_proto", "inet_service"]
        cmds.append(_set(table, f"allow_v{v}_port", port_key, ["timeout"]))
        cmds.append(_set(table, f"ipblock_v{v}", [addr, addr], ["interval"]))
        for proto in IPBLOCK_PROTOCOLS:
            cmds.append(_set(table, f"ipblock_v{v}_{proto}", [addr, addr, "inet_service"], ["interval"]))
    return cmds


def base_ruleset(
    table: str = DEFAULT_TABLE,
    denial: Denial = Denial(),
    mark: int = 0,
    verify_sni: bool = False,
    sni_queue: int | None = None,
) -> list[Command]:
    """Create or adopt the table: sets are kept with their elements, chains are rewritten atomically
    (so a restart that switches between enforce and audit mode swaps the verdict in one transaction).

    With `mark`, each packet sent to an egress chain gets that bit, which tells the guard table
    (fqdn_policy.enforcer.guard) that this table judged it. `sni_queue` is the NFQUEUE the verify-sni
    check sends unverified flows' first data to (None: the kernel has no queue statement, they are
    dropped; fqdn_policy.enforcer.sniruleset). Without `verify_sni` the verify-sni chains stay empty
    and no rule looks a verified element up, so a destination only verifying grants allow is denied
    (fail closed) and the forward chain is what it was before verify-sni."""
    cmds: list[Command] = [{"add": {"table": {"family": FAMILY, "name": table}}}, *_sets(table)]
    cmds += sniruleset.sets(table)
    cmds.append({"add": {"counter": {"family": FAMILY, "table": table, "name": UNLOGGED_COUNTER}}})
    chains: dict[str, dict[str, Any]] = {name: {} for name in CHAINS}
    chains["forward"] = {"type": "filter", "hook": "forward", "prio": FORWARD_PRIORITY, "policy": "accept"}
    for name, base in chains.items():
        cmds.append({"add": {"chain": {"family": FAMILY, "table": table, "name": name, **base}}})
        cmds.append({"flush": {"chain": {"family": FAMILY, "table": table, "name": name}}})
    if verify_sni:
        cmds += sniruleset.forward_rules(table)
        cmds += sniruleset.verdict_chains(table, mark)
        cmds += sniruleset.check_chain(table, sni_queue, mark)
    ct = {"ct": {"key": "state"}}
    cmds.append(
        _rule(
            table,
            "forward",
            [{"match": {"op": "in", "left": ct, "right": ["established", "related"]}}, {"accept": None}],
        )
    )
    for v in (4, 6):
        saddr = _field(v, "saddr")
        cmds.append(
            _rule(
                table,
                "forward",
                [
                    _match_set([saddr], f"enforced_v{v}"),
                    *([set_mark_bit(mark)] if mark else []),
                    {"jump": {"target": f"egress_v{v}"}},
                ],
            )
        )
        cmds += _allow_rules(table, v)
        if verify_sni:
            cmds += sniruleset.egress_rules(table, v, sni_queue)
        cmds += _denial_rules(table, v, denial)
    return cmds


def _allow_rules(table: str, v: int) -> list[Command]:
    """egress_vN up to the denial: exempt destinations, neighbour discovery, ipBlocks, the allow sets."""
    cmds: list[Command] = []
    saddr = _field(v, "saddr")
    chain = f"egress_v{v}"
    daddr = _field(v, "daddr")
    l4proto = {"meta": {"key": "l4proto"}}
    dport = {"payload": {"protocol": "th", "field": "dport"}}
    cmds.append(_rule(table, chain, [_match_set([daddr], f"exempt_v{v}"), {"accept": None}]))
    if v == 6:
        # Neighbour discovery never leaves the link, but with bridge netfilter a pod's solicitations
        # flooded to the other bridge ports pass this hook: denying them broke nothing the node
        # needed, yet filled the drop log with one line per pod and neighbour.
        nd = {"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}},
                        "right": {"set": list(ND_TYPES)}}}  # fmt: skip
        cmds.append(_rule(table, chain, [nd, {"accept": None}]))
    cmds.append(_rule(table, chain, [_match_set([saddr, daddr], f"ipblock_v{v}"), {"accept": None}]))
    for proto in IPBLOCK_PROTOCOLS:
        is_proto = {"match": {"op": "==", "left": l4proto, "right": proto}}
        lookup = _match_set([saddr, daddr, dport], f"ipblock_v{v}_{proto}")
        cmds.append(_rule(table, chain, [is_proto, lookup, {"accept": None}]))
    cmds.append(_rule(table, chain, [_match_set([saddr, daddr], f"allow_v{v}"), {"accept": None}]))
    cmds.append(
        _rule(table, chain, [_match_set([saddr, daddr, l4proto], f"allow_v{v}_proto"), {"accept": None}])
    )
    cmds.append(
        _rule(
            table,
            chain,
            [_match_set([saddr, daddr, l4proto, dport], f"allow_v{v}_port"), {"accept": None}],
        )
    )
    return cmds


def _denial_rules(table: str, version: int, denial: Denial) -> list[Command]:
    """The end of egress_vN (log within the rate, count beyond it) and the whole of deny_vN.

    One token bucket decides: `limit rate over` matches the packets beyond the rate, which are counted
    in the named counter and go straight to the verdict; the others fall through to the log rule. In
    audit mode only a connection's first packet (ct state new) is logged: the accepted connection is
    established from then on and passes the forward chain's first rule.
    """
    egress, deny = f"egress_v{version}", f"deny_v{version}"
    goto = {"goto": {"target": deny}}
    new_only: list[dict[str, Any]] = []
    if denial.mode is Mode.AUDIT:
        new_only = [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}]
    cmds: list[Command] = []
    if denial.nflog_group is not None:
        rate = denial.log_rate
        over = {"limit": {"rate": rate, "burst": 2 * rate, "per": "second", "inv": True}}
        cmds.append(_rule(table, egress, [*new_only, over, {"counter": UNLOGGED_COUNTER}, goto]))
        log = {"log": {"group": denial.nflog_group, "prefix": f"{LOG_PREFIX} {denial.mode}", "snaplen": 96}}
        cmds.append(_rule(table, egress, [*new_only, log]))
    cmds.append(_rule(table, egress, [goto]))
    if denial.mode is Mode.AUDIT:
        cmds.append(_rule(table, deny, [{"counter": None}, {"accept": None}], comment="fqdn-policy: audit"))
        return cmds
    rejected = _match_set([_field(version, "saddr")], f"reject_v{version}")
    tcp = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}
    cmds.append(_rule(table, deny, [rejected, tcp, {"counter": None}, {"reject": {"type": "tcp reset"}}]))
    admin = {"reject": {"type": _ICMP[version], "expr": "admin-prohibited"}}
    cmds.append(_rule(table, deny, [rejected, {"counter": None}, admin]))
    cmds.append(_rule(table, deny, [{"counter": None}, {"drop": None}], comment="fqdn-policy: not allowed"))
    return cmds


def _element_value(element: Element) -> dict[str, Any]:
    src, dst, proto, port = element
    if proto is None or (proto == SNI and port is None):
        return {"concat": [src, dst]}
    if proto == SNI:
        return {"concat": [src, dst, port]}
    if port is None:
        return {"concat": [src, dst, proto]}
    return {"concat": [src, dst, proto, port]}


def element_set_name(element: Element) -> str:
    """The allow set an element belongs in: by the destination's IP version and the grant's shape."""
    return set_name(6 if ":" in element[1] else 4, element[2], element[3])


def element_commands(
    table: str,
    writes: Iterable[ElementWrite],
    deletes: Iterable[Element] = (),
    refresh: Refresh = Refresh.UPDATE,
) -> list[Command]:
    """Deletes first, then writes, grouped one command per set: for the transactions that change
    elements together with other things (a policy change, a reinstall). An answer's own writes go over
    netlink instead (fqdn_policy.enforcer.elementwire writes the same attributes).

    Re-adding an element that exists refreshes it only when the request carries an expiration
    (Linux 6.10+ element updates; with a timeout alone and the same value the kernel keeps the old
    expiry, measured on 6.18), so every write sets `expires` as well as `timeout`. Callers only write
    when the new expiry is later than what the kernel holds (policy.state.ttl): an update can also shorten.
    Older kernels ignore the re-add: with Refresh.REPLACE each written element is added (ensured),
    deleted and added again in the same transaction (fqdn_policy.enforcer.refresh).
    """
    cmds: list[Command] = []
    by_set: dict[str, list[dict[str, Any]]] = {}
    for element in deletes:
        by_set.setdefault(element_set_name(element), []).append(_element_value(element))
    cmds += _element_verb("delete", table, by_set)
    by_set = {}
    if refresh is Refresh.REPLACE:
        writes = list(latest_writes((None, w) for w in writes).values())
    for write in writes:
        elem = {
            "elem": {
                "val": _element_value(write.element),
                "timeout": write.timeout,
                "expires": write.timeout,
                "comment": write.name[:COMMENT_LENGTH],
            }
        }
        by_set.setdefault(element_set_name(write.element), []).append(elem)
    if refresh is Refresh.REPLACE:
        cmds += _element_verb("add", table, by_set)
        keys = {name: [e["elem"]["val"] for e in elems] for name, elems in by_set.items()}
        cmds += _element_verb("delete", table, keys)
    return cmds + _element_verb("add", table, by_set)


def _element_verb(verb: str, table: str, by_set: dict[str, list[Any]]) -> list[Command]:
    return [
        {verb: {"element": {"family": FAMILY, "table": table, "name": name, "elem": elems}}}
        for name, elems in by_set.items()
    ]


def enforced_commands(table: str, add: Iterable[str], remove: Iterable[str]) -> list[Command]:
    return pod_set_commands(table, "enforced", add, remove)


def reject_commands(table: str, add: Iterable[str], remove: Iterable[str]) -> list[Command]:
    return pod_set_commands(table, "reject", add, remove)


def pod_set_commands(table: str, prefix: str, add: Iterable[str], remove: Iterable[str]) -> list[Command]:
    """Add and remove pod addresses in `<prefix>_v4` / `<prefix>_v6`."""
    cmds: list[Command] = []
    add, remove = list(add), list(remove)
    for verb, addresses in (("delete", remove), ("add", add)):
        for v in (4, 6):
            elems = [a for a in addresses if (":" in a) == (v == 6)]
            if elems:
                cmds.append(
                    {
                        verb: {
                            "element": {
                                "family": FAMILY,
                                "table": table,
                                "name": f"{prefix}_v{v}",
                                "elem": elems,
                            }
                        }
                    }
                )
    return cmds


def exempt_commands(table: str, networks: Iterable[str]) -> list[Command]:
    """Replace the exempt sets' contents (flush and add in the same transaction)."""
    cmds: list[Command] = []
    networks = list(networks)
    for v in (4, 6):
        cmds.append({"flush": {"set": {"family": FAMILY, "table": table, "name": f"exempt_v{v}"}}})
        elems = []
        for net in networks:
            if (":" in net) != (v == 6):
                continue
            addr, _, plen = net.partition("/")
            elems.append({"prefix": {"addr": addr, "len": int(plen)}} if plen else addr)
        if elems:
            cmds.append(
                {
                    "add": {
                        "element": {"family": FAMILY, "table": table, "name": f"exempt_v{v}", "elem": elems}
                    }
                }
            )
    return cmds


def ipblock_commands(table: str, elements: Iterable[IpBlockElement]) -> list[Command]:
    """Replace the NetworkPolicy sets' contents; in one transaction with the flush, so no gap."""
    by_set: dict[str, list[dict[str, Any]]] = {}
    for v in (4, 6):
        by_set[f"ipblock_v{v}"] = []
        for proto in IPBLOCK_PROTOCOLS:
            by_set[f"ipblock_v{v}_{proto}"] = []
    for src, network, ports in sorted(elements, key=str):
        addr, _, plen = network.partition("/")
        dst = {"prefix": {"addr": addr, "len": int(plen)}}
        v = 6 if ":" in src else 4
        if ports is None:
            by_set[f"ipblock_v{v}"].append({"concat": [src, dst]})
        else:
            proto, first, last = ports
            port: int | dict[str, list[int]] = first if first == last else {"range": [first, last]}
            by_set[f"ipblock_v{v}_{proto}"].append({"concat": [src, dst, port]})
    cmds: list[Command] = []
    for name, elems in by_set.items():
        cmds.append({"flush": {"set": {"family": FAMILY, "table": table, "name": name}}})
        if elems:
            cmds.append({"add": {"element": {"family": FAMILY, "table": table, "name": name, "elem": elems}}})
    return cmds


def delete_table(table: str) -> list[Command]:
    return [{"delete": {"table": {"family": FAMILY, "name": table}}}]
