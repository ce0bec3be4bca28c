"""TTL arithmetic: how long an allowed address stays in a set.

Defaults, and why:
- min 60 s: a TTL of 0 or 1 must still cover the connection that follows the lookup and the client's
  retries; many runtimes also reuse an answer past its TTL (the JVM's default is 30 s, connection pools
  reconnect to addresses they already hold). Established flows never depend on it (conntrack keeps them).
- max 86400 s: bounds how long a stale address stays open when the name moved; any later lookup extends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fqdn_policy.settings import SettingError, setting, validate, whole, whole_at_least

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
    min_ttl: int = setting(
        DEFAULT_MIN_TTL,
        "--min-ttl",
        "shortest time (s) an answered address stays allowed",
        parse=whole,
        check=whole_at_least(1),  # an element with no timeout never expires
    )
    max_ttl: int = setting(
        DEFAULT_MAX_TTL, "--max-ttl", "longest time (s) an answered address stays allowed", parse=whole
    )
    refresh_slack: float = setting(
        DEFAULT_REFRESH_SLACK,
        "--refresh-slack",
        f"fraction of its timeout (at most {MAX_REFRESH_SLACK} s) an element outlives its answer, so "
        "repeated answers need no kernel write; 0 writes exact timeouts",
        parse=float,
        check=lambda v: None if 0.0 <= v <= 1.0 else "is not a fraction between 0 and 1",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.max_ttl < self.min_ttl:
            raise SettingError("--max-ttl", f"{self.max_ttl} is below min TTL {self.min_ttl} (--min-ttl)")

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
