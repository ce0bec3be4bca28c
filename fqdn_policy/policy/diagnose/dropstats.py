"""What the drop reader counts: plain ints and one dict, read (and labelled) only when scraped."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DropStats:
    # Denied connections per pod ("namespace/name", or the source address of a pod the agent does not
    # know); in audit mode, the connections enforcement would have denied.
    by_pod: dict[str, int] = field(default_factory=dict)
    unlogged: int = 0  # denied packets beyond the log rate since this agent started

    def count(self, pod: str) -> None:
        self.by_pod[pod] = self.by_pod.get(pod, 0) + 1
