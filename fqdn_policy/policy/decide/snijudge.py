"""The verify-sni decision for one new TCP connection: may the name its first bytes present reach this
destination port from this pod?

Pure, like the DNS decision: the queue reader hands in the connection and what its first bytes
presented (fqdn_policy.sni); the answer says whether to let it through, which rules did, and the
names the pod had resolved to that address (what the log line shows beside the presented one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from fqdn_policy.policy.match.ruleindex import PolicyIndex, RuleRef
from fqdn_policy.policy.state.allowtable import AllowTable


class SniJudgement(NamedTuple):
    allowed: bool
    pod: str | None  # namespace/name, None when no pod has the source address
    rules: tuple[RuleRef, ...]  # the verifying rules that let the presented name through
    resolved: tuple[str, ...]  # names the pod resolved to the destination, sorted
    reason: str | None  # why it is denied (or let through unchecked), for the log line


def judge_presented(
    index: PolicyIndex,
    table: AllowTable,
    src: str,
    dst: str,
    port: int,
    name: str | None,
    refused: str | None,
) -> SniJudgement:
    """`name` is the normalised presented name, None when none was (then `refused` says why).

    A connection whose source is no longer an enforced pod (its policy was removed after the SYN) is
    let through: the kernel no longer enforces that pod either."""
    client = index.client(src)
    if client is None or client.rules is None:
        return SniJudgement(True, client.key if client else None, (), (), "source is not an enforced pod")
    resolved = tuple(sorted(table.names_for(client.key, dst)))
    if name is None:
        return SniJudgement(False, client.key, (), resolved, refused or "no name presented")
    rules = client.rules.verifying(name, port)
    if not rules:
        return SniJudgement(False, client.key, (), resolved, "presented name not allowed on this port")
    return SniJudgement(True, client.key, rules, resolved, None)


@dataclass(slots=True)
class SniStats:
    """What the verify-sni reader counts; read (and labelled) only when scraped."""

    # Verified connections by (pod, verdict): "allowed", "denied", or "would_deny" (audit mode).
    connections: dict[tuple[str, str], int] = field(default_factory=dict)
    unreadable_packets: int = 0  # queued packets that were not a whole TCP segment (denied)
    queue_overflows: int = 0  # times the kernel found the reader's buffer full (those packets dropped)
    held: int = 0  # connections whose first bytes are incomplete, waiting for the rest
    reading: bool = False  # the queue is bound and read

    def count(self, pod: str, verdict: str) -> None:
        key = (pod, verdict)
        self.connections[key] = self.connections.get(key, 0) + 1
