"""TTL arithmetic: how long an allowed address stays in a set.

Defaults, and why:
- min 60 s: a TTL of 0 or 1 must still cover the connection that follows the lookup and the client's
  retries; many runtimes also reuse an answer past its TTL (the JVM's default is 30 s, connection pools
  reconnect to addresses they already hold). Established flows never depend on it (conntrack keeps them).
- max 86400 s: bounds how long a stale address stays open when the name moved; any later lookup extends it.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MIN_TTL = 60
DEFAULT_MAX_TTL = 86400
# Refresh slack: an element is written to outlive its answer's timeout by this fraction of it (at most
# MAX_REFRESH_SLACK s), so the same answer repeated within that time is already covered and costs no
# kernel write. Without it every repeat of a clamped or constant TTL extends the expiry by the few
# seconds since the last one, i.e. one write per answer (docs/benchmarks.md). 0 writes exact timeouts.
DEFAULT_REFRESH_SLACK = 0.1
MAX_REFRESH_SLACK = 60


@dataclass(frozen=True, slots=True)
class TTLPolicy:
    min_ttl: int = DEFAULT_MIN_TTL
    max_ttl: int = DEFAULT_MAX_TTL
    refresh_slack: float = 0.0  # fraction of the timeout; the agent's default is DEFAULT_REFRESH_SLACK

    def __post_init__(self) -> None:
        if self.min_ttl < 1:
            raise ValueError(
                f"min TTL must be at least 1 s (an element with no timeout never expires), got {self.min_ttl}"
            )
        if self.max_ttl < self.min_ttl:
            raise ValueError(f"max TTL {self.max_ttl} is below min TTL {self.min_ttl}")
        if not 0.0 <= self.refresh_slack <= 1.0:
            raise ValueError(f"refresh slack must be a fraction between 0 and 1, got {self.refresh_slack}")

    def timeout(self, ttl: int) -> int:
        """Seconds an address answered with this record TTL stays allowed."""
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def written_timeout(self, timeout: int) -> int:
        """The timeout the kernel is told for an answer allowed for `timeout` s: that plus the slack.

        An element therefore lives at least as long as its answer allows, and at most the slack longer.
        """
        return timeout + min(int(timeout * self.refresh_slack), MAX_REFRESH_SLACK)

    def needs_write(self, current_expiry: float | None, ttl: int, now: float) -> bool:
        """Whether an answer must (re)write an element: only if it would extend what the kernel holds.

        A shorter TTL never cuts a longer remaining timeout, and an answer covered by the current
        expiry costs no write at all, which is what keeps repeated lookups off the kernel.
        """
        return current_expiry is None or current_expiry < now + self.timeout(ttl)
