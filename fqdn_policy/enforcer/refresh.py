"""How an allow-set element that exists gets its new timeout: the kernel decides, the probe finds out.

Linux 6.10 and later update an element in place when it is re-added with a timeout and an expiration
(element updates). Older kernels, Debian 12's 6.1 among them, accept the same re-add and do nothing: the
element keeps its first timeout and expires while the agent believes it refreshed (measured under qemu on
6.1.192: shared/reference/kernel-6.1.md). There the element is replaced instead, in the same netlink
batch: `add` (creates it if it expired meanwhile, else a no-op), `delete`, `add` with the new timeout.
A batch is one nf_tables transaction, so the packet path sees the old element until the commit and the
new one after it, never neither; the first `add` keeps the `delete` from failing (ENOENT, and with it
the whole batch) when the kernel expired the element a moment before the agent did.

fqdn_policy.enforcer.kernelprobe picks the strategy at start by trying both on a scratch set and reading the
expiry back; enforcer.elementwire (the answers' writes) and enforcer.ruleset.element_commands (policy
changes, repairs) encode either.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

from fqdn_policy.policy.state.elements import Element, ElementWrite


class Refresh(StrEnum):
    UPDATE = "update"  # re-add with timeout and expiration: an in-place update (Linux 6.10+)
    REPLACE = "replace"  # add, delete, add in one transaction (any kernel)


K = TypeVar("K")


def latest_writes(writes: Iterable[tuple[K, ElementWrite]]) -> dict[tuple[K, Element], ElementWrite]:
    """One write per (place, element): the one that holds longest, as AllowTable.commit records it. A
    replace must name each element once: a second `delete` of it in the same transaction fails."""
    out: dict[tuple[K, Element], ElementWrite] = {}
    for place, write in writes:
        key = (place, write.element)
        held = out.get(key)
        if held is None or held.expiry < write.expiry:
            out[key] = write
    return out
