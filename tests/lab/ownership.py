"""Who owns which lab, so stale-namespace cleanup never tears down a lab that another live
test process (a parallel pytest run, another engineer's session) is still using."""

from __future__ import annotations

import json
import os
from pathlib import Path

REGISTRY_DIR = Path("/run/fqlab")


def _start_time(pid: int) -> str | None:
    # Field 22 of /proc/PID/stat survives pid reuse checks: a recycled pid gets a new start time.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parens; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def claim(lab_id: str) -> None:
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    record = {"pid": pid, "start": _start_time(pid)}
    (REGISTRY_DIR / f"{lab_id}.json").write_text(json.dumps(record))


def release(lab_id: str) -> None:
    (REGISTRY_DIR / f"{lab_id}.json").unlink(missing_ok=True)


def owner_alive(lab_id: str) -> bool:
    try:
        record = json.loads((REGISTRY_DIR / f"{lab_id}.json").read_text())
    except (OSError, ValueError):
        return False
    start = _start_time(int(record["pid"]))
    return start is not None and start == record.get("start")
