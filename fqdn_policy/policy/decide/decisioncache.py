"""Decisions remembered, so a repeated answer skips the matcher and the table.

At saturation most answers are repeats: the same client asks the same question and the upstream
answers with the same bytes, which the DNS layer hands on as the *same* parsed answer object
(fqdn_policy.dnsproxy.parsememo). Deciding it again would give the same result as long as nothing the decision
read has changed. Two kinds of decision are remembered, those that wrote nothing:

- ALLOWED with every element already in the kernel ("covered");
- every outcome that allows nothing (a name no rule allows, a pod no policy selects, an unknown
  client, an answer without usable addresses), which reads only the index and the guard.

It is the same decision while:

- the answer says the same: its rcode and its addresses with their TTLs are equal to those the
  decision was made for (the parse memo hands on the same tuple, so this is an identity test at first);
- the policy generation is the same (policy.decide.enforcement moves it with every new policy index
  and address guard);
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

    rcode: int  # what the answer it was decided for said
    addresses: tuple[tuple[int, str, int], ...]
    covered_until: float  # infinite for a decision that allows nothing
    generation: int  # the core's policy generation when it was decided
    removals: int
    counter: Any  # the core's lookup-counter key (shared between entries)
    outcome: Any  # fqdn_policy.policy.decide.decision.Outcome
    pod: str | None
    qname: str | None
    # ALLOWED: the allowances each repeat extends, (address, seconds); the first on its own, since
    # nearly every answer has one address (`more` is then the shared empty tuple).
    dst: str | None
    seconds: int
    more: tuple[tuple[str, int], ...]
    # A denial: the answered addresses, kept for drop attribution (empty when there is nothing to keep).
    denied: tuple[str, ...]


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
        rcode: int,
        addresses: tuple[tuple[int, str, int], ...],
        generation: int,
        removals: int,
        now: float,
    ) -> Remembered | None:
        """The client's remembered decision for this question, if it still holds (the rules above)."""
        entries = self._by_client.get(client)
        entry = entries.get(question) if entries is not None else None
        if (
            entry is None
            or now > entry.covered_until
            or entry.generation != generation
            or entry.removals != removals
            or entry.rcode != rcode
            or (entry.addresses is not addresses and entry.addresses != addresses)
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
