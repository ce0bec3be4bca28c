"""New TCP connections to one destination, one after another, for a while; prints one JSON object.

    python -m tests.lab.connectloop HOST PORT --seconds 5 [--timeout 0.2] [--pause 0.02]

For "no new flow ever got through during X": each attempt is a fresh connection (a new conntrack entry
that the forward hook must judge), counted as connected, timeout (dropped) or other; `first_connected`
and `last_connected` say when (seconds from the start) any got through.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Sequence
from typing import Any


def run(host: str, port: int, seconds: float, timeout: float, pause: float) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    counts: dict[str, Any] = {"attempts": 0, "connected": 0, "timeout": 0, "other": 0}
    connected_at: list[float] = []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        counts["attempts"] += 1
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect((host, port))
                counts["connected"] += 1
                connected_at.append(round(time.monotonic() - start, 3))
            except TimeoutError:
                counts["timeout"] += 1
            except OSError:
                counts["other"] += 1
        time.sleep(pause)
    counts["first_connected"] = connected_at[0] if connected_at else None
    counts["last_connected"] = connected_at[-1] if connected_at else None
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.connectloop")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--timeout", type=float, default=0.2)
    p.add_argument("--pause", type=float, default=0.02)
    a = p.parse_args(argv)
    print(json.dumps(run(a.host, a.port, a.seconds, a.timeout, a.pause)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
