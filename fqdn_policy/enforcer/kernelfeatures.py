"""Every kernel feature the agent's tables use, the release that brought it, and how to try it.

Pure data: enforcer.kernelprobe runs each probe in a scratch table and names what the kernel refused.
A version string says little on its own (distributions backport, and a feature may sit in a module
that is not installed), so the probe decides; the version is there for the error and the docs
(docs/kernels.md). Versions are the first mainline release with the feature; those marked with a commit
are from nftables' own feature probes (tests/shell/features), the rest from the kernel's history.

The minimum is the newest of the required features: interval sets with concatenated keys, Linux 5.6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fqdn_policy.enforcer.ruleset import FAMILY, FORWARD_PRIORITY, Command

MINIMUM_KERNEL = "5.6"
SCRATCH_CHAIN = "probe"
_V4 = "ipv4_addr"
_PAIR = "192.0.2.1"


@dataclass(frozen=True, slots=True)
class KernelFeature:
    name: str
    since: str  # the first Linux release with it
    used_for: str
    commands: Callable[[str], list[Command]]  # what to try, in a scratch table of that name
    provided_by: str = ""  # the kernel option and module, where a kernel may well be built without it

    def describe(self) -> str:
        built = f"; kernel option {self.provided_by}" if self.provided_by else ""
        return f"{self.name} (Linux {self.since}+, for {self.used_for}{built})"


@dataclass(frozen=True, slots=True)
class Needs:
    """Which optional parts of the ruleset this agent will install."""

    reject: bool = True  # the deny chains' reject rules (enforce mode)
    nflog: bool = True  # denied packets logged to an NFLOG group, beyond a rate only counted
    guard_mark: bool = True  # the guard table's mark bit
    dns_redirect: bool = False  # --dns-service: the inet nat table
    sni_queue: bool = False  # SNI/Host verification: first payload packets queued to the agent


def _chain(table: str, **base: Any) -> Command:
    return {"add": {"chain": {"family": FAMILY, "table": table, "name": SCRATCH_CHAIN, **base}}}


def _rule(table: str, *expr: dict[str, Any]) -> list[Command]:
    rule = {"family": FAMILY, "table": table, "chain": SCRATCH_CHAIN, "expr": list(expr)}
    return [_chain(table), {"add": {"rule": rule}}]


def _set(
    table: str, key: list[str], flags: list[str], elem: list[Any], lookup: list[dict[str, Any]] | None = None
) -> list[Command]:
    """A set with an element and, with `lookup`, a rule matching those fields against it: a kernel may
    accept a set it cannot look up (Linux 7.2 and `meta l4proto` in an interval set)."""
    body = {"family": FAMILY, "table": table, "name": "s", "type": key, "flags": flags}
    element = {"family": FAMILY, "table": table, "name": "s", "elem": elem}
    commands: list[Command] = [{"add": {"set": body}}, {"add": {"element": element}}]
    if lookup:
        commands += _rule(table, {"match": {"op": "==", "left": {"concat": lookup}, "right": "@s"}})
    return commands


def _ip(field: str) -> dict[str, Any]:
    return {"payload": {"protocol": "ip", "field": field}}


_L4PROTO = {"meta": {"key": "l4proto"}}
_DPORT = {"payload": {"protocol": "th", "field": "dport"}}


def _nfproto(family: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": family}}


def _l4(protocol: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": protocol}}


BASE_CHAIN = KernelFeature(
    "inet tables with a filter chain on the forward hook",
    "3.14",
    "the enforcing chains",
    lambda t: [_chain(t, type="filter", hook="forward", prio=FORWARD_PRIORITY, policy="accept")],
)
CONCAT_TIMEOUT = KernelFeature(
    "sets with concatenated keys and element timeouts",
    "4.1",
    "the allow sets (pod . destination . protocol . port, timeout from the TTL)",
    lambda t: _set(
        t,
        [_V4, _V4, "inet_proto", "inet_service"],
        ["timeout"],
        [{"elem": {"val": {"concat": [_PAIR, _PAIR, "tcp", 443]}, "timeout": 60}}],
        [_ip("saddr"), _ip("daddr"), _L4PROTO, _DPORT],
    ),
)
ELEMENT_COMMENT = KernelFeature(
    "set element comments (user data)",
    "4.5",
    "the query name on each allowed element, which a restarted agent adopts",
    lambda t: _set(
        t, [_V4, _V4], ["timeout"], [{"elem": {"val": {"concat": [_PAIR, _PAIR]}, "comment": "x.example"}}]
    ),
)
ELEMENT_EXPIRES = KernelFeature(
    "element expiration on add (commit 79ebb5bb4e38)",
    "5.3",
    "writing an element with the time its lookup has left",
    lambda t: _set(
        t,
        [_V4, _V4],
        ["timeout"],
        [{"elem": {"val": {"concat": [_PAIR, _PAIR]}, "timeout": 60, "expires": 30}}],
    ),
)
CONCAT_INTERVAL = KernelFeature(
    "interval sets with concatenated keys",
    "5.6",
    "NetworkPolicy ipBlocks (pod . network [. port range], a set per protocol)",
    lambda t: _set(
        t,
        [_V4, _V4, "inet_service"],
        ["interval"],
        [{"concat": [_PAIR, {"prefix": {"addr": "198.51.100.0", "len": 24}}, {"range": [80, 443]}]}],
        [_ip("saddr"), _ip("daddr"), _DPORT],
    ),
)
CT_STATE = KernelFeature(
    "conntrack state matching",
    "3.14",
    "letting established and related flows through",
    lambda t: _rule(
        t,
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
        {"accept": None},
    ),
)
NAMED_COUNTER = KernelFeature(
    "named counters",
    "4.10",
    "counting denied packets beyond the log rate (and the guard's drops)",
    lambda t: [
        {"add": {"counter": {"family": FAMILY, "table": t, "name": "c"}}},
        *_rule(t, {"counter": "c"}),
    ],
)
REJECT = KernelFeature(
    "reject with a TCP reset or ICMP administratively prohibited",
    "3.14",
    "the fast failure of --reject and the on-deny: reject annotation",
    lambda t: [
        *_rule(t, _l4("tcp"), {"reject": {"type": "tcp reset"}}),
        # By family, as the deny chains do: a protocol name such as icmp would need /etc/protocols,
        # which minimal images lack (libnftables resolves tcp and udp itself).
        *_rule(t, _nfproto("ipv4"), {"reject": {"type": "icmp", "expr": "admin-prohibited"}}),
        *_rule(t, _nfproto("ipv6"), {"reject": {"type": "icmpv6", "expr": "admin-prohibited"}}),
    ],
)
NFLOG = KernelFeature(
    "logging to an NFLOG group",
    "3.14",
    "the egress.dropped lines (--nflog-group)",
    lambda t: _rule(t, {"log": {"group": 1, "prefix": "probe", "snaplen": 96}}),
)
LIMIT_OVER = KernelFeature(
    "rate limits matching above the rate (limit rate over)",
    "4.3",
    "bounding the drop log (--drop-log-rate)",
    lambda t: _rule(t, {"limit": {"rate": 1, "burst": 2, "per": "second", "inv": True}}),
)
META_MARK = KernelFeature(
    "setting the packet mark",
    "3.14",
    "the guard table's mark bit (--guard-mark)",
    lambda t: _rule(
        t, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 2]}}}
    ),
)
INET_NAT = KernelFeature(
    "NAT in inet tables",
    "5.2",
    "redirecting pods' DNS to the agent (--dns-service)",
    lambda t: [
        _chain(t, type="nat", hook="prerouting", prio=-110, policy="accept"),
        {
            "add": {
                "rule": {
                    "family": FAMILY,
                    "table": t,
                    "chain": SCRATCH_CHAIN,
                    "expr": [_l4("udp"), {"dnat": {"family": "ip", "addr": _PAIR, "port": 53}}],
                }
            }
        },
    ],
)
NFT_QUEUE = KernelFeature(
    "queue statement (nft_queue)",
    "3.14",
    "SNI/Host verification (the first payload packets of unverified flows queued to the agent)",
    # No "flags": without bypass, a queue nobody has bound drops the packet (fail closed).
    lambda t: _rule(t, _l4("tcp"), {"queue": {"num": 1}}),
    "CONFIG_NFT_QUEUE, module nft_queue",
)
NFQUEUE_BIND = KernelFeature(
    "binding an NFQUEUE queue (nfnetlink_queue)",
    "2.6.14",
    "reading the queued packets and giving their verdicts",
    lambda t: [],  # not an nf_tables command: kernelprobe.queue_binding binds a socket instead
    "CONFIG_NETFILTER_NETLINK_QUEUE, module nfnetlink_queue",
)
# Not probed here: element timeout updates (Linux 6.10, commit 4201f3938914) are optional, and the
# refresh probe (fqdn_policy.enforcer.kernelprobe.choose_refresh) tries them on a real element.


def required_features(needs: Needs) -> list[KernelFeature]:
    """The features this agent's ruleset uses, in the order they are probed."""
    features = [BASE_CHAIN, CONCAT_TIMEOUT, ELEMENT_COMMENT, ELEMENT_EXPIRES, CONCAT_INTERVAL, CT_STATE]
    features.append(NAMED_COUNTER)
    if needs.reject:
        features.append(REJECT)
    if needs.nflog:
        features += [NFLOG, LIMIT_OVER]
    if needs.guard_mark:
        features.append(META_MARK)
    if needs.dns_redirect:
        features.append(INET_NAT)
    if needs.sni_queue:
        features.append(NFT_QUEUE)
    return features


ALL_FEATURES = required_features(Needs(dns_redirect=True, sni_queue=True))
