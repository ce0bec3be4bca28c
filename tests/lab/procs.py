"""Process bookkeeping for the lab: every child gets its own process group so it can be
ended together with whatever it forked, and only ever by the ids we recorded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class LabCommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message carries stderr, so a failed setup step explains itself."""

    def __str__(self) -> str:
        base = super().__str__()
        err = (self.stderr or "").strip()
        return f"{base}\n{err}" if err else base


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_captured(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run, except that a timeout or an interrupt kills the whole process group:
    plain subprocess.run only kills the direct child and then can hang on pipes that a
    grandchild still holds open."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(list(argv), timeout, output=out, stderr=err) from exc
    finally:
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check and result.returncode != 0:
        raise LabCommandError(result.returncode, list(argv), out, err)
    return result


class ProcessGroups:
    """Remembers spawned children and tears them down as whole groups."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def spawn(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        # A fresh session makes the child a group leader; killpg then reaches its helpers too.
        kw.pop("process_group", None)
        kw["start_new_session"] = True
        proc: subprocess.Popen[Any] = subprocess.Popen(list(argv), **kw)
        self._procs.append(proc)
        return proc

    def terminate_all(self, grace: float = 2.0) -> None:
        procs, self._procs = self._procs, []
        # Only signal groups whose leader we have not reaped: once reaped, its pid may be reused.
        live = [p for p in procs if p.poll() is None]
        for p in live:
            _killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in live:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _killpg(p.pid, signal.SIGKILL)
                p.wait()
        for p in procs:
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


def namespace_pids(netns: str) -> list[int]:
    res = run_captured(["ip", "netns", "pids", netns], timeout=10, check=False)
    return [int(tok) for tok in res.stdout.split() if tok.isdigit()]


def kill_namespace_pids(netns: str, timeout: float = 3.0) -> None:
    """Kill whatever still runs inside one of our namespaces (e.g. a grandchild that called
    setsid): such a process would keep the namespace alive after `ip netns del`."""
    deadline = time.monotonic() + timeout
    while True:
        pids = namespace_pids(netns)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
