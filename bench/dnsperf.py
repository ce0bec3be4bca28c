"""Running dnsperf inside a lab namespace and reading its report.

dnsperf 2.10 (Debian 12) has no latency histogram option, so percentiles come from ``-v``: with it,
dnsperf prints one line per answered query, ``> RCODE NAME TYPE SECONDS``, which is fine at a fixed
2,000 qps (tens of thousands of lines) and is not used for the saturation runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.lab.netlab import Lab

# Not `-O suppress=...`: with it, dnsperf 2.10 can spin at 100% CPU past its -l and ignore SIGINT once
# late answers arrive for queries it already timed out (seen with the agent stalling for seconds).

_NUM = r"([0-9.]+)"
_FIELDS = {
    "sent": rf"Queries sent:\s+{_NUM}",
    "completed": rf"Queries completed:\s+{_NUM}",
    "lost": rf"Queries lost:\s+{_NUM}",
    "run_time_s": rf"Run time \(s\):\s+{_NUM}",
    "qps": rf"Queries per second:\s+{_NUM}",
    "avg_latency_s": rf"Average Latency \(s\):\s+{_NUM}",
    "min_latency_s": rf"Average Latency \(s\):\s+[0-9.]+ \(min {_NUM}",
    "max_latency_s": rf"Average Latency \(s\):.*max {_NUM}\)",
}
_VERBOSE = re.compile(r"^> (\S+) (\S+) (\S+) ([0-9.]+)$", re.MULTILINE)


@dataclass
class PerfResult:
    argv: list[str]
    sent: int = 0
    completed: int = 0
    lost: int = 0
    run_time_s: float = 0.0
    qps: float = 0.0
    avg_latency_s: float = 0.0
    min_latency_s: float = 0.0
    max_latency_s: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    # Only with verbose=True: per-query latencies (seconds) for names in `marked` and the rest.
    latencies_marked: list[float] = field(default_factory=list)
    latencies_other: list[float] = field(default_factory=list)
    interrupted: bool = False  # dnsperf overran its -l and was stopped with SIGINT

    @property
    def latencies(self) -> list[float]:
        return self.latencies_marked + self.latencies_other

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sent": self.sent,
            "completed": self.completed,
            "lost": self.lost,
            "run_time_s": self.run_time_s,
            "qps": round(self.qps, 1),
            "avg_ms": ms(self.avg_latency_s),
            "max_ms": ms(self.max_latency_s),
            "rcodes": self.rcodes,
            "interrupted": self.interrupted,
            "argv": " ".join(self.argv),
        }
        if self.latencies:
            out |= {
                "samples": len(self.latencies),
                "p50_ms": ms(percentile(self.latencies, 50)),
                "p99_ms": ms(percentile(self.latencies, 99)),
                "p999_ms": ms(percentile(self.latencies, 99.9)),
                "allowed": latency_summary(self.latencies_marked),
                "not_allowed": latency_summary(self.latencies_other),
            }
        return out


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "samples": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
    }


def parse(argv: list[str], text: str, marked: Collection[str] = ()) -> PerfResult:
    result = PerfResult(argv=argv)
    for key, pattern in _FIELDS.items():
        m = re.search(pattern, text)
        if m:
            kind = type(getattr(result, key))
            setattr(result, key, kind(float(m.group(1))))
    m = re.search(r"Response codes:\s+(.*)", text)
    if m:
        for part in m.group(1).split(","):
            bits = part.split()
            if len(bits) >= 2 and bits[1].isdigit():
                result.rcodes[bits[0]] = int(bits[1])
    for rcode, name, _qtype, seconds in _VERBOSE.findall(text):
        if rcode != "NOERROR":
            continue
        target = result.latencies_marked if name.rstrip(".").lower() in marked else result.latencies_other
        target.append(float(seconds))
    return result


def run(
    lab: Lab,
    pod: str,
    server: str,
    queries: str,
    *,
    seconds: float,
    clients: int = 10,
    outstanding: int = 100,
    max_qps: int | None = None,
    runs: int | None = None,
    verbose: bool = False,
    marked: Collection[str] = (),
    timeout_s: float = 2.0,
    grace_s: float = 15.0,
) -> PerfResult:
    """One bounded dnsperf run (always with -l) from `pod` against `server` (port 53, UDP)."""
    argv = ["dnsperf", "-s", server, "-p", "53", "-d", queries, "-l", f"{seconds:g}"]
    argv += ["-c", str(clients), "-q", str(outstanding), "-t", f"{timeout_s:g}"]
    if max_qps is not None:
        argv += ["-Q", str(max_qps)]
    if runs is not None:
        argv += ["-n", str(runs)]
    if verbose:
        argv.append("-v")
    with tempfile.TemporaryFile("w+") as out:
        proc = lab.popen(pod, argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        interrupted = _wait_bounded(proc, seconds + timeout_s + grace_s)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0 and not interrupted:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}): {text.strip()[-500:]}")
    result = parse(argv, text, marked)
    result.interrupted = interrupted
    return result


def _wait_bounded(proc: subprocess.Popen[Any], limit: float) -> bool:
    """Wait for dnsperf; past `limit` (its -l did not stop it) SIGINT it, which still prints the
    statistics, then SIGKILL. Returns whether it had to be interrupted."""
    try:
        proc.wait(timeout=limit)
        return False
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    return True
