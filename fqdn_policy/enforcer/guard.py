"""The guard table: keeps enforced pods closed when the main table vanishes.

Without it, an administrator's `nft delete table inet fqdn_policy` (or a flushed chain, or a flushed
`enforced_v4` set) leaves every selected pod with open egress until the agent rebuilds the table. The
guard is a second, small table that holds its own copy of the enforced and exempt sets and one base
chain on the same forward hook, at a later priority:

    table inet fqdn_policy_guard
      set enforced_v4 / enforced_v6, exempt_v4 / exempt_v6     (copies, written in the same transactions)
      counter dropped
      chain forward (hook forward, priority main + 1)
        meta mark & BIT == BIT  meta mark set meta mark & ~BIT  accept   # the main table judged it
        ct state established,related accept                            # as the main table does
        ip saddr @enforced_v4 ip daddr != @exempt_v4 counter name dropped drop
        ip6 saddr @enforced_v6 ip6 daddr != @exempt_v6 counter name dropped drop

The main table sets BIT on every packet it sends to an egress chain (a new flow from an enforced pod).
An accept in one base chain does not skip the others on the hook, and a drop ends the packet, so: main
present -> its verdict rules (its drops never reach the guard, its accepts arrive marked); main gone,
flushed or its enforced set emptied -> the guard drops new flows of enforced pods; guard gone -> the main
table still enforces. The agent rebuilds whichever is missing. The guard clears BIT again, so the bit is
only visible to chains between the two priorities.

Established flows survive a deleted main table: they were accepted when they started and the main table
accepts them too, so killing them would make a deletion worse than the policy it bypasses.

A packet whose mark already carries BIT before the forward hook passes the guard unchecked (and loses
the bit): BIT must be one no other component on the node sets. See docs/failure-modes.md for the marks
kube-proxy, Calico, Cilium and others use, and why 0x2 is the default.
"""

from __future__ import annotations

from typing import Any

from fqdn_policy.enforcer.ruleset import FAMILY, FORWARD_PRIORITY, Command

DEFAULT_GUARD_MARK = 0x00000002
GUARD_SUFFIX = "_guard"
GUARD_CHAINS = frozenset({"forward"})
DROP_COUNTER = "dropped"

_IP = {4: "ip", 6: "ip6"}
_ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}
_MARK = {"meta": {"key": "mark"}}


def guard_table(main_table: str) -> str:
    return main_table + GUARD_SUFFIX


def validate_mark(mark: int) -> int:
    """One bit of the 32-bit packet mark (0 turns the guard off)."""
    if mark < 0 or mark > 0xFFFFFFFF or (mark and mark & (mark - 1)):
        raise ValueError(f"guard mark {mark:#x} is not a single bit of the 32-bit packet mark (or 0)")
    return mark


def guard_ruleset(table: str, mark: int) -> list[Command]:
    """Create or adopt the guard table; its chain is rewritten, its sets kept (refilled by the caller)."""
    cmds: list[Command] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    for v in (4, 6):
        cmds.append(_set(table, f"enforced_v{v}", _ADDR[v], []))
        cmds.append(_set(table, f"exempt_v{v}", _ADDR[v], ["interval"]))
    cmds.append({"add": {"counter": {"family": FAMILY, "table": table, "name": DROP_COUNTER}}})
    chain = {"family": FAMILY, "table": table, "name": "forward"}
    base = {"type": "filter", "hook": "forward", "prio": FORWARD_PRIORITY + 1, "policy": "accept"}
    cmds.append({"add": {"chain": {**chain, **base}}})
    cmds.append({"flush": {"chain": chain}})
    marked = {"match": {"op": "==", "left": {"&": [_MARK, mark]}, "right": mark}}
    clear = {"mangle": {"key": _MARK, "value": {"&": [_MARK, 0xFFFFFFFF ^ mark]}}}
    cmds.append(_rule(table, [marked, clear, {"accept": None}]))
    ct = {"ct": {"key": "state"}}
    cmds.append(
        _rule(
            table,
            [{"match": {"op": "in", "left": ct, "right": ["established", "related"]}}, {"accept": None}],
        )
    )
    for v in (4, 6):
        saddr = {"payload": {"protocol": _IP[v], "field": "saddr"}}
        daddr = {"payload": {"protocol": _IP[v], "field": "daddr"}}
        cmds.append(
            _rule(
                table,
                [
                    {"match": {"op": "==", "left": saddr, "right": f"@enforced_v{v}"}},
                    {"match": {"op": "!=", "left": daddr, "right": f"@exempt_v{v}"}},
                    {"counter": DROP_COUNTER},
                    {"drop": None},
                ],
                comment="fqdn-policy guard: main table missing",
            )
        )
    return cmds


def _set(table: str, name: str, key: str, flags: list[str]) -> Command:
    body: dict[str, Any] = {"family": FAMILY, "table": table, "name": name, "type": key}
    if flags:
        body["flags"] = flags
    return {"add": {"set": body}}


def _rule(table: str, expr: list[dict[str, Any]], comment: str | None = None) -> Command:
    body: dict[str, Any] = {"family": FAMILY, "table": table, "chain": "forward", "expr": expr}
    if comment:
        body["comment"] = comment
    return {"add": {"rule": body}}
