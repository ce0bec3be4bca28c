"""The per-lookup decision log: the hottest log in the agent, so it is written without structlog.

Same line shape as every other event (`event`, `level`, `ts` plus fields, one JSON object per line),
but encoded by orjson with a timestamp whose date and time of day are formatted once per second, and
written to a buffered stream flushed a few times a second. Every decision that writes to the kernel
gets a line, so this is paid per new allowance: measured 1.0 us to encode a typical line with orjson
against 10.5 us with the standard library's C encoder, and 0.4 us for the timestamp against 4.1 us
with datetime.isoformat (docs/benchmarks.md).

Modes (`--log-decisions`):
- `all`: one line per decision.
- `changes` (default): a line for every decision that wrote to the kernel or failed, and for the first
  decision of each (pod, name, outcome) in a window (a write counts as that first one); repeats within
  the window are counted and reported
  as one `dns.repeated` line per key when the window closes. Nothing is silent, and a pod hammering one
  name costs one line per window, not one per query.
- `none`: only failures.

Bounded per pod too (`--log-rate`): a pod flooding unique names would otherwise get a line per name,
since each one is new and writes. Beyond `rate` lines a second (bursts of twice that) a pod's lines are
folded: not written, counted, and reported as one `dns.decisions_folded` line per pod every
FOLD_REPORT_SECONDS and in `fqdn_policy_decision_lines_folded_total{pod}`. A folded decision is not
opened as a repeat key either, so the window's memory is bounded by the rate, not by the flood. Failures
are never folded.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterator
from enum import StrEnum
from typing import Any, TextIO

import orjson

DEFAULT_WINDOW = 60.0
# Lines per second one pod's decisions may take (bursts of twice that). A pod's steady decisions in the
# default mode are a line per new allowance: 50 a second is a pod resolving 3,000 new names a minute.
DEFAULT_LINE_RATE = 50.0
FOLD_REPORT_SECONDS = 10.0
# Pods (or unknown clients' addresses) folded lines are counted for, at most; beyond, under OTHER_CLIENTS.
MAX_FOLDED_KEYS = 4096
OTHER_CLIENTS = "(other)"


class LogMode(StrEnum):
    ALL = "all"
    CHANGES = "changes"
    NONE = "none"


class DecisionLog:
    def __init__(
        self,
        stream: TextIO | None = None,
        mode: LogMode = LogMode.CHANGES,
        window: float = DEFAULT_WINDOW,
        rate: float = DEFAULT_LINE_RATE,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._mode = mode
        # Enum members are slow to read in Python 3.11 (a descriptor call each): these are asked per answer.
        self._counts_repeats = mode is LogMode.CHANGES
        self._silent = mode is LogMode.NONE
        self.window = window
        self._clock = UtcTimestamps()
        # (client, type, outcome) -> name -> repeats in this window. Nested rather than keyed by the
        # whole tuple: a window can see one key per name (100,000 in the benchmark's fill), and the
        # retained 4-tuple was 72 bytes each (docs/benchmarks.md, "Memory and reload").
        self._repeats: dict[tuple[Any, ...], dict[Any, int]] = {}
        self._window_started: float | None = None  # set by the first decision's clock
        self._closed: deque[Iterator[dict[str, Any]]] = deque()  # closed windows' lines not yet written
        self.lines = 0
        self.suppressed = 0
        self.rate = rate  # 0: no limit
        self._buckets: dict[str, list[float]] = {}  # who -> [tokens, when last filled]
        self.folded: dict[str, int] = {}  # who -> folded lines since start (the metric)
        self._folded_since: dict[str, int] = {}  # who -> folded since the last dns.decisions_folded
        self._fold_reported: float | None = None

    @property
    def mode(self) -> LogMode:
        return self._mode

    def wants(self, key: tuple[Any, ...], wrote: bool, failed: bool, now: float, who: str = "") -> bool:
        """Whether this decision gets a line; `key` is (client, name, type, outcome), `who` the pod
        (or the client's address) whose line rate it counts against. Counts repeats and folds.

        Asked before the line's fields are built, so a suppressed repeat costs a dict probe.
        """
        if failed:
            return True
        if not self._counts_repeats:
            return not self._silent and self._take(who or key[0], now)
        client, qname, qtype, outcome = key
        if not wrote and self.counted_repeat(client, qname, qtype, outcome, now):
            return False
        if not self._take(who or client, now):
            return False
        # The first of its key in this window, or a write (which opens the key's window too: the
        # covered repeats after it are counted, not printed).
        if self._window_started is None:
            self._window_started = now
        elif now - self._window_started >= self.window:
            self.close_window(now)  # its lines are written later, in slices (write_closed)
        group = self._repeats.get((client, qtype, outcome))
        if group is None:
            group = self._repeats[(client, qtype, outcome)] = {}
        group.setdefault(qname, 0)
        return True

    def counted_repeat(self, client: str, qname: Any, qtype: int, outcome: Any, now: float) -> bool:
        """For a decision that wrote nothing: True when it is counted as a repeat of its key in this
        window (no line); False, with nothing recorded, when it would get a line, so the caller takes
        the path that builds it (and calls `wants`, which starts with this)."""
        if not self._counts_repeats:
            return self._silent
        started = self._window_started
        if started is None or now - started >= self.window:
            return False  # `wants` opens the window, or closes the old one
        group = self._repeats.get((client, qtype, outcome))
        seen = group.get(qname) if group is not None else None
        if seen is None:
            return False
        group[qname] = seen + 1  # type: ignore[index]
        self.suppressed += 1
        return True

    def _take(self, who: str, now: float) -> bool:
        """One line of `who`'s rate, or False (counted as folded) when it has none left."""
        rate = self.rate
        if rate <= 0:
            return True
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= MAX_FOLDED_KEYS:
                self._prune_buckets(now)
            bucket = self._buckets[who] = [2 * rate, now]
        tokens = min(2 * rate, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        if who not in self.folded and len(self.folded) >= MAX_FOLDED_KEYS:
            who = OTHER_CLIENTS
        self.folded[who] = self.folded.get(who, 0) + 1
        self._folded_since[who] = self._folded_since.get(who, 0) + 1
        return False

    def _prune_buckets(self, now: float) -> None:
        """Forget the buckets that have filled up again: they are as a new one would be."""
        rate = self.rate
        full = [w for w, (tokens, last) in self._buckets.items() if tokens + (now - last) * rate >= 2 * rate]
        for who in full:
            del self._buckets[who]
        if len(self._buckets) >= MAX_FOLDED_KEYS:  # every one busy: start again rather than grow
            self._buckets.clear()

    def report_folded(self, now: float, force: bool = False) -> None:
        """Every FOLD_REPORT_SECONDS (or now, with `force`): one dns.decisions_folded line per pod that
        had lines folded since the last report."""
        if self._fold_reported is None:
            self._fold_reported = now
        seconds = now - self._fold_reported
        if not force and seconds < FOLD_REPORT_SECONDS:
            return
        self._fold_reported = now
        since, self._folded_since = self._folded_since, {}
        for who, count in since.items():
            fields = {
                "pod": who,
                "folded": count,
                "folded_total": self.folded[who],
                "seconds": round(seconds, 1),
            }
            self._write("dns.decisions_folded", "warning", fields)
        if len(self._buckets) > 256:
            self._prune_buckets(now)

    def write(self, fields: dict[str, Any], failed: bool = False) -> None:
        self._write("dns.decision", "error" if failed else "info", fields)

    def flush_repeats(self, now: float) -> None:
        """Report what the closing window counted but did not print, and start a new window."""
        self.close_window(now)
        self.write_closed()

    def close_window_if_due(self, now: float) -> bool:
        """Close the window if it is over; whether there are lines to write (`write_closed`)."""
        if self._repeats and self._window_started is not None and now - self._window_started >= self.window:
            self.close_window(now)
        return bool(self._closed)

    def close_window(self, now: float) -> None:
        """Start a new window. The closed one's counts wait for `write_closed`: a window can hold one
        key per name looked up (20,000 lines took 70 ms to write), which must not stall the answers
        of the query that happens to close it."""
        if self._repeats:
            started = self._window_started if self._window_started is not None else now
            seconds = round(now - started, 1)
            self._closed.append(self._repeated_lines(self._repeats, seconds))
            self._repeats = {}
        self._window_started = now

    def write_closed(self, limit: int | None = None) -> bool:
        """Write up to `limit` (default: all) lines of closed windows; whether some are left."""
        written = 0
        while self._closed:
            for fields in self._closed[0]:
                self._write("dns.repeated", "info", fields)
                written += 1
                if limit is not None and written >= limit:
                    return True
            self._closed.popleft()
        return False

    @staticmethod
    def _repeated_lines(
        repeats: dict[tuple[Any, ...], dict[Any, int]], seconds: float
    ) -> Iterator[dict[str, Any]]:
        for (client, qtype, outcome), group in repeats.items():
            for qname, count in group.items():
                if count:
                    yield {
                        "client": client,
                        "qname": qname,
                        "qtype": qtype,
                        "outcome": outcome,
                        "count": count,
                        "window_s": seconds,
                    }

    def _write(self, event: str, level: str, fields: dict[str, Any]) -> None:
        """`fields` becomes the line: event, level and ts are added to it, not to a copy."""
        fields["event"] = event
        fields["level"] = level
        fields["ts"] = self._clock.now()
        self.stream.write(orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE).decode())
        self.lines += 1

    def flush(self) -> None:
        self.stream.flush()


class UtcTimestamps:
    """ISO 8601 UTC timestamps with microseconds, as structlog's TimeStamper(fmt="iso", utc=True) writes
    them ("2026-11-26T09:00:00.123456Z"), with the part before the fraction formatted once a second."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        return self.format(self._clock())

    def format(self, t: float) -> str:
        # Rounded to the microsecond as datetime.fromtimestamp does (t * 1e6 is exact to well below a
        # microsecond for any date before 2255).
        second, micro = divmod(round(t * 1_000_000), 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{micro:06d}Z"
