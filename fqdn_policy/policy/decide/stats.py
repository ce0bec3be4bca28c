"""What the enforcement core counts: plain ints and one dict, read (and labelled) only when scraped."""

from __future__ import annotations

from dataclasses import dataclass, field

from fqdn_policy.policy.decide.decision import Outcome


@dataclass(slots=True)
class EnforcementStats:
    # (outcome, qtype, upstream rcode) -> answered lookups: one dict increment per answer. Types the
    # core does not count by number count under 0 (Enforcement.counted_qtypes).
    lookups: dict[tuple[str, int, int], int] = field(default_factory=dict)
    write_failures: int = 0
    elements_written: int = 0
    held: int = 0  # answers waiting for their kernel write right now
    remembered: int = 0  # answers released on a remembered decision (policy.decide.decisioncache)
    evict_delete_failures: int = 0  # budget evictions' element deletes the kernel refused

    def by_outcome(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for (outcome, _, _), n in self.lookups.items():
            out[outcome] += n
        return out
