"""The verify-sni datapath in the main table: which flows are checked, what goes to the queue, and
how the agent's verdict becomes the flow's conntrack mark.

    sets sni_v4 (pod . dst), sni_v4_port (pod . dst . port), and _v6: elements of verifying grants
    chain egress_vN, after the allow sets (so an address some other grant allows is never checked):
        meta l4proto tcp  pod . dst [. tcp dport] @sni_vN[_port]  ct mark |= NEED  log group N  accept
    chain forward, first (before `ct state established accept`):
        meta mark & OK == OK      goto sni_allowed: meta mark &= ~OK    ct mark |= OK    accept
        meta mark & DENY == DENY  goto sni_denied:  meta mark &= ~DENY  ct mark |= DENY  reset
        ct direction original  ct mark & (NEED|OK|DENY) == NEED  goto sni_check   # it always decides
        ct direction original  ct mark & DENY == DENY  drop
    chain sni_check: SYN and RST, and segments without payload (exactly: IP length = headers), accepted
        in the kernel; anything else queued (`queue num N`, no bypass: fail closed when the agent is
        not reading); without the kernel's queue statement, dropped.

The SYN is copied to NFLOG group N (the queue's number), not held: its sequence number is where the
stream starts, so the agent knows which bytes come first (fqdn_policy.sni.verifier); the copy reaches
the agent's socket before the client can send its first data, a round trip later. The agent answers a
queued data packet with NF_REPEAT and the OK or DENY packet mark, so the packet runs the forward chain
again from its top and the first two rules turn the verdict into the flow's ct mark: a verified flow is
never queued again and survives agent restarts (conntrack keeps the mark). The reply direction is never
checked (the server answers only what the client sent). With the guard table's mark bit, every accept
here sets it too, as the forward chain's jump to egress_vN does: the guard must see these packets as
judged (a retransmitted SYN is still ct state new).
"""

from __future__ import annotations

from typing import Any

from fqdn_policy.enforcer.nftjson import (
    CT_MARK,
    MARK,
    Command,
    bits_equal,
    clear_mark_bits,
    equals,
    field,
    match_set,
    rule,
    set_,
    set_ct_mark_bits,
    set_mark_bit,
)

CHECK_CHAIN = "sni_check"
ALLOWED_CHAIN = "sni_allowed"
DENIED_CHAIN = "sni_denied"
CHAINS = (CHECK_CHAIN, ALLOWED_CHAIN, DENIED_CHAIN)
# Conntrack mark bits of a checked flow, and the packet mark bits of the agent's verdict. Above the
# bits kube-proxy (0x4000, 0x8000), Cilium (0x0f00 region) and this project's guard (0x2) use, and
# below Calico's default packet-mark range (0xffff0000); docs/sni.md lists them.
CT_NEED = 0x00100000
CT_OK = 0x00200000
CT_DENY = 0x00400000
VERDICT_OK = 0x00200000
VERDICT_DENY = 0x00400000
DEFAULT_QUEUE = 4054  # beside the NFLOG group 4053; the SYN copies go to the NFLOG group of this number
SYN_SNAPLEN = 128  # an IPv6 header with extension headers and the TCP header: the sequence number is in
_ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}
_TCP_DATA_OFFSETS = range(5, 16)  # 32-bit words of TCP header: 20 to 60 bytes


def set_name(version: int, port: int | None) -> str:
    return f"sni_v{version}" if port is None else f"sni_v{version}_port"


def sets(table: str) -> list[Command]:
    cmds = []
    for v in (4, 6):
        addr = _ADDR[v]
        cmds.append(set_(table, set_name(v, None), [addr, addr], ["timeout"]))
        cmds.append(set_(table, set_name(v, 1), [addr, addr, "inet_service"], ["timeout"]))
    return cmds


def egress_rules(table: str, version: int, queue: int | None) -> list[Command]:
    """A new TCP flow to an address only verifying grants allow: marked to be checked, and its SYN
    copied to the agent (NFLOG group `queue`: where the stream starts) and accepted; without a queue
    statement only accepted (its data is then dropped by the check)."""
    saddr, daddr = field(version, "saddr"), field(version, "daddr")
    tcp = equals({"meta": {"key": "l4proto"}}, "tcp")
    dport = {"payload": {"protocol": "tcp", "field": "dport"}}
    copy = [] if queue is None else [{"log": {"group": queue, "snaplen": SYN_SNAPLEN}}]
    need = [set_ct_mark_bits(CT_NEED), *copy, {"accept": None}]
    chain = f"egress_v{version}"
    return [
        rule(table, chain, [tcp, match_set([saddr, daddr], set_name(version, None)), *need]),
        rule(table, chain, [tcp, match_set([saddr, daddr, dport], set_name(version, 1)), *need]),
    ]


def forward_rules(table: str) -> list[Command]:
    """The forward chain's first rules: the agent's verdicts to their chains, unverified flows to the
    check. Each goes to a chain that always decides (goto), so the forward chain itself marks nothing."""
    original = equals({"ct": {"key": "direction"}}, "original")
    return [
        rule(
            table, "forward", [bits_equal(MARK, VERDICT_OK, VERDICT_OK), {"goto": {"target": ALLOWED_CHAIN}}]
        ),
        rule(
            table,
            "forward",
            [bits_equal(MARK, VERDICT_DENY, VERDICT_DENY), {"goto": {"target": DENIED_CHAIN}}],
        ),
        rule(
            table,
            "forward",
            [
                original,
                bits_equal(CT_MARK, CT_NEED | CT_OK | CT_DENY, CT_NEED),
                {"goto": {"target": CHECK_CHAIN}},
            ],
        ),
        rule(table, "forward", [original, bits_equal(CT_MARK, CT_DENY, CT_DENY), {"drop": None}]),
    ]


def verdict_chains(table: str, mark: int = 0) -> list[Command]:
    """sni_allowed and sni_denied: the verdict becomes the flow's ct mark; the packet mark bit is cleared
    so that nothing after this table sees it (and the guard's `mark` set on the accepted one)."""
    judged = [set_mark_bit(mark)] if mark else []
    return [
        rule(
            table,
            ALLOWED_CHAIN,
            [clear_mark_bits(VERDICT_OK), *judged, set_ct_mark_bits(CT_OK), {"accept": None}],
        ),
        rule(
            table,
            DENIED_CHAIN,
            [
                clear_mark_bits(VERDICT_DENY),
                set_ct_mark_bits(CT_DENY),
                {"counter": None},
                {"reject": {"type": "tcp reset"}},
            ],
            comment="fqdn-policy: name not allowed (verify-sni)",
        ),
    ]


def check_chain(table: str, queue: int | None, mark: int = 0) -> list[Command]:
    """The rules of sni_check; `queue` None where the kernel has no queue statement: fail closed."""
    flags = {"payload": {"protocol": "tcp", "field": "flags"}}
    accept = [*([set_mark_bit(mark)] if mark else []), {"accept": None}]
    cmds = [
        rule(table, CHECK_CHAIN, [{"match": {"op": "in", "left": flags, "right": ["syn", "rst"]}},
                                  *accept]),
    ]  # fmt: skip
    cmds += [rule(table, CHECK_CHAIN, [*match, *accept]) for match in _without_payload()]
    if queue is None:
        verdict: list[dict[str, Any]] = [{"counter": None}, {"drop": None}]
        return [
            *cmds,
            rule(table, CHECK_CHAIN, verdict, comment="fqdn-policy: no nft queue (CONFIG_NFT_QUEUE)"),
        ]
    return [*cmds, rule(table, CHECK_CHAIN, [{"queue": {"num": queue}}])]


def _without_payload() -> list[list[dict[str, Any]]]:
    """Matches for a TCP segment that carries no data: the IP length is exactly the headers' length
    (nft cannot subtract one field from another, so one rule per TCP data offset; an IPv4 header with
    options is left to the agent, which accepts an empty segment too)."""
    doff = {"payload": {"protocol": "tcp", "field": "doff"}}
    v4 = [equals({"meta": {"key": "nfproto"}}, "ipv4"), equals(field(4, "hdrlength"), 5)]
    v6 = [equals({"meta": {"key": "nfproto"}}, "ipv6"), equals(field(6, "nexthdr"), "tcp")]
    out = []
    for offset in _TCP_DATA_OFFSETS:
        out.append([*v4, equals(doff, offset), equals(field(4, "length"), 20 + 4 * offset)])
        out.append([*v6, equals(doff, offset), equals(field(6, "length"), 4 * offset)])
    return out
