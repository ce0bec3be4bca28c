"""The processes under test (two dnsmasq roles and the agent) and what is read from them.

Everything runs through ``Lab.popen`` / ``Lab.run`` inside the lab's namespaces; ``Lab.close`` ends
whatever is still running. ``stop`` ends one process group this harness started, by its id.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.lab.netlab import Lab

UPSTREAM_IP = "198.51.100.53"
NODE_IP = "10.244.1.1"
DNSMASQ_TABLE = "bench_dnsmasq"
PROXY_TABLE = "fqdn_policy"
REPO = Path(__file__).resolve().parent.parent
AGENT = REPO / ".venv" / "bin" / "fqdn-policy"


def _dnsmasq_common(work: Path, role: str, listen: str) -> list[str]:
    return [
        "dnsmasq",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--keep-in-foreground",
        "--port=53",
        f"--listen-address={listen}",
        "--bind-interfaces",
        "--log-facility=-",
        f"--pid-file={work / f'dnsmasq-{role}.pid'}",
    ]


def start_upstream(lab: Lab, work: Path, hosts: Path, ttl: int) -> subprocess.Popen[Any]:
    argv = _dnsmasq_common(work, "upstream", UPSTREAM_IP)
    argv += [f"--addn-hosts={hosts}", "--cache-size=10000", f"--local-ttl={ttl}"]
    log = (work / "dnsmasq-upstream.log").open("w")
    return lab.popen("inet", argv, stdout=log, stderr=subprocess.STDOUT)


def create_dnsmasq_sets(lab: Lab, timeout_s: int) -> None:
    ruleset = (
        f"table inet {DNSMASQ_TABLE} {{\n"
        f"  set s4 {{ type ipv4_addr; flags timeout; timeout {timeout_s}s; }}\n"
        f"  set s6 {{ type ipv6_addr; flags timeout; timeout {timeout_s}s; }}\n"
        "}\n"
    )
    lab.run("node", ["nft", "-f", "-"], input=ruleset, timeout=10)


def delete_dnsmasq_sets(lab: Lab) -> None:
    lab.run("node", ["nft", "delete", "table", "inet", DNSMASQ_TABLE], timeout=10, check=False)


def start_dnsmasq_nftset(lab: Lab, work: Path, domains: Sequence[str]) -> subprocess.Popen[Any]:
    """dnsmasq as a forwarder with its cache off, adding every A/AAAA of `domains` to nftables sets."""
    argv = _dnsmasq_common(work, "nftset", NODE_IP)
    nftset = "/" + "/".join(domains) + f"/4#inet#{DNSMASQ_TABLE}#s4,6#inet#{DNSMASQ_TABLE}#s6"
    argv += [f"--server={UPSTREAM_IP}", "--cache-size=0", f"--nftset={nftset}"]
    log = (work / "dnsmasq-nftset.log").open("w")
    return lab.popen("node", argv, stdout=log, stderr=subprocess.STDOUT)


def agent_command(tree: Path | None = None) -> list[str]:
    """The agent's command line: this checkout's, or the one in `tree` (another checkout or git
    worktree, run with this venv's interpreter and packages; bench.ab compares code versions so)."""
    if tree is None:
        return [str(AGENT)]
    # -P: not the working directory first on sys.path, which would put this checkout before `tree`.
    # A checkout from before the fqdn_policy namespace (886f587 and earlier) has its command in agent.cli.
    module = "fqdn_policy" if (tree / "fqdn_policy").is_dir() else "agent.cli"
    return ["env", f"PYTHONPATH={tree.resolve()}", sys.executable, "-P", "-m", module]


def start_agent(
    lab: Lab,
    work: Path,
    policy: Path,
    min_ttl: int,
    extra: Sequence[str] = (),
    label: str = "agent",
    tree: Path | None = None,
) -> tuple[subprocess.Popen[Any], Path]:
    """The agent with its default logging (JSON lines on stdout), redirected to a file; `extra` are
    further `run` arguments (bench.ab compares variants); `tree` runs another checkout's code."""
    log_path = work / f"{label}.log"
    argv = [*agent_command(tree), "run", "--policy", str(policy), "--listen", f"{NODE_IP}:53"]
    argv += ["--upstream", f"{UPSTREAM_IP}:53", "--min-ttl", str(min_ttl)]
    argv += ["--client-rate", "0"]  # one pod is the whole load here; the per-client limit would cap it
    argv += list(extra)
    stderr = (work / f"{label}.stderr").open("w")
    proc = lab.popen("node", argv, stdout=log_path.open("w"), stderr=stderr)
    return proc, log_path


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> int | None:
    """SIGTERM the group of a process this harness started, SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def wait_answering(lab: Lab, pod: str, server: str, name: str, qtype: str, timeout: float = 30.0) -> float:
    """Poll with dig until `server` answers NOERROR; returns the seconds it took."""
    started = time.monotonic()
    argv = ["dig", f"@{server}", name, qtype, "+time=1", "+tries=1", "+noall", "+comments"]
    while time.monotonic() - started < timeout:
        res = lab.run(pod, argv, timeout=5, check=False)
        if "status: NOERROR" in res.stdout:
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"{server} did not answer {name} {qtype} within {timeout:.0f} s")


def count_elements(lab: Lab, table: str, sets: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in sets:
        res = lab.run("node", ["nft", "-j", "list", "set", "inet", table, name], timeout=60, check=False)
        if res.returncode != 0:
            counts[name] = -1
            continue
        doc = json.loads(res.stdout)
        counts[name] = sum(len(item["set"].get("elem", [])) for item in doc["nftables"] if "set" in item)
    return counts


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB, plus the thread count."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def is_agent(pid: int) -> bool:
    """`ip netns exec` execs its command, so the Popen pid is the agent's own python process."""
    try:
        return "fqdn-policy" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


class LogFollower:
    """Reads a JSON-lines log as it grows and waits for events."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def skip_to_end(self) -> None:
        self.offset = self.path.stat().st_size
        self._partial = b""

    def _new_lines(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_for(self, events: Sequence[str], timeout: float, poll: float = 0.002) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self._new_lines():
                if record.get("event") in events:
                    return record
            time.sleep(poll)
        raise TimeoutError(f"no {'/'.join(events)} in {self.path} within {timeout:.0f} s")


def summarize_agent_log(path: Path) -> dict[str, Any]:
    """Counts of decisions by outcome, SERVFAILs and elements written, from the agent's log."""
    outcomes: dict[str, int] = {}
    events: dict[str, int] = {}
    written = 0
    errors = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            event = record.get("event", "?")
            events[event] = events.get(event, 0) + 1
            if event == "dns.decision":
                outcome = record.get("outcome", "?")
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                written += int(record.get("elements_written", 0))
                if "error" in record:
                    errors += 1
    return {
        "events": events,
        "outcomes": outcomes,
        "elements_written": written,
        "write_errors": errors,
        "log_bytes": path.stat().st_size,
    }


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def steal_seconds() -> float:
    """CPU time the hypervisor has taken from this machine's virtual CPUs so far, all of them summed
    (/proc/stat's `steal`, in clock ticks: 10 ms steps). A process whose virtual CPU is stolen stops
    without the guest seeing a context switch: on this host that, not the code, is most of the p99 at
    a fixed rate (docs/benchmarks.md)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def cpu_us_per_query(
    before: tuple[float, float], after: tuple[float, float], queries: int
) -> tuple[float, float] | None:
    """User and system CPU between two `cpu_seconds` readings, in microseconds per answered query;
    None when no query was answered."""
    if not queries:
        return None
    return (after[0] - before[0]) / queries * 1e6, (after[1] - before[1]) / queries * 1e6


def py_spy() -> str | None:
    """py-spy from the venv or PATH (optional: `.venv/bin/pip install py-spy`)."""
    candidate = REPO / ".venv" / "bin" / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[Any] | None:
    """Sample the agent for `seconds` (collapsed stacks, non-blocking); None without py-spy."""
    exe = py_spy()
    if exe is None:
        return None
    argv = [exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200", "--nonblocking"]
    argv += ["-f", "raw", "-o", str(out)]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * n / total, 1)) for name, n in ranked]

    return {"samples": total, "self_percent": share(own), "inclusive_percent": share(inclusive)}


def _frame(text: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`; py-spy's thread labels pass unchanged."""
    name, _, where = text.partition(" (")
    if not where:
        return text
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{name} ({short})"


def agent_stats(proc: subprocess.Popen[Any], follower: LogFollower) -> dict[str, Any]:
    """The agent's cumulative hold-time histogram: SIGUSR1 makes it log an `agent.stats` line."""
    follower.skip_to_end()
    os.kill(proc.pid, signal.SIGUSR1)
    record = follower.wait_for(["agent.stats"], timeout=30)
    return {k: record[k] for k in ("hold_time", "nft_call_time", "gc_pauses")}
