"""Decisions remembered, so a repeated answer skips the matcher and the table.

At saturation most answers are repeats: the same client asks the same question and the upstream
answers with the same bytes, which the DNS layer hands on as the *same* parsed answer object
(fqdn_policy.dnsproxy.parsememo). Deciding it again would give the same result as long as nothing the decision
read has changed. Two kinds of decision are remembered, those that wrote nothing:

- ALLOWED with every element already in the kernel ("covered");
- every outcome that allows nothing (a name no rule allows, a pod no policy selects, an unknown
  client, an answer without usable addresses), which reads only the index and the guard.

It is the same decision while:

- the policy index (rules, pods and their addresses) and the address guard are the same objects;
- no element was taken out of the table before its expiry (`AllowTable.removals` is unchanged; an
  entry budget's evictions, which take one pod's, drop that pod's remembered decisions instead:
  `forget`);
- `now` is at most the plan's `covered_until`, so every element the answer implies still outlives
  the answer's timeout (a decision that allows nothing has no such bound).

Expiry alone never voids an entry early: an element can expire only after `covered_until`. The
answer's own bookkeeping (its resolutions' new end or, for a denial, the names kept for drop
attribution; the counts; the log) is still done on every hit; only the matching and the per-element
lookups are skipped. A repeat that is the first of a new log
window (fqdn_policy.ops.decisionlog) is decided again for its line.
"""

from __future__ import annotations

from typing import Any, NamedTuple

DEFAULT_CAPACITY = 65_536


class Remembered(NamedTuple):
    """What a repeat needs: the checks above, and the answer's bookkeeping. Nothing else is kept, so
    an entry costs about 250 bytes (a decision and its plan would be four times that)."""

    answer: object  # the parsed answer it was decided for, compared by identity
    covered_until: float  # infinite for a decision that allows nothing
    index: object
    guard: object
    removals: int
    counter: Any  # the gate's lookup-counter key (shared between entries)
    outcome: Any  # fqdn_policy.policy.decide.decision.Outcome
    pod: str | None
    qname: str | None
    # ALLOWED: address, allowance in seconds, address, allowance, ...: the resolutions each repeat
    # extends. Flat, since nearly every answer has one address (a tuple of pairs costs 64 bytes more).
    # A denial: the answered addresses, kept for drop attribution (empty when there is nothing to keep).
    renew: tuple[str | int, ...]


class DecisionCache:
    """client address -> wire question -> the remembered decision of its last answer.

    Nested rather than keyed by (client, question), which would cost a 72-byte tuple per entry.
    Bounded: at `capacity` entries it starts again empty (a repeat then takes the full path once),
    rather than paying for recency on every hit; a capacity of 0 remembers nothing.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._by_client: dict[str, dict[bytes, Remembered]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(
        self,
        client: str,
        question: bytes,
        answer: object,
        index: object,
        guard: object,
        removals: int,
        now: float,
    ) -> Remembered | None:
        entries = self._by_client.get(client)
        entry = entries.get(question) if entries is not None else None
        if (
            entry is None
            or entry.answer is not answer
            or now > entry.covered_until
            or entry.index is not index
            or entry.guard is not guard
            or entry.removals != removals
        ):
            return None
        return entry

    def put(self, client: str, question: bytes, entry: Remembered) -> None:
        if self.capacity <= 0:
            return
        entries = self._by_client.get(client)
        if entries is None:
            entries = self._by_client[client] = {}
        if question not in entries:
            if self._size >= self.capacity:
                self.clear()
                entries = self._by_client[client] = {}
            self._size += 1
        entries[question] = entry

    def forget(self, client: str) -> None:
        """Drop one client's remembered decisions (an entry budget evicted some of its pod's entries)."""
        entries = self._by_client.pop(client, None)
        if entries is not None:
            self._size -= len(entries)

    def clear(self) -> None:
        self._by_client.clear()
        self._size = 0
