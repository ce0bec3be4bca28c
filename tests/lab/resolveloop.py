"""A pod that keeps using a name: every INTERVAL s, look it up, then open a new TCP connection to
each address the answer gave; prints one JSON object with every round.

    python -m tests.lab.resolveloop NAME TYPE PORT --server IP:PORT --seconds 13 [--interval 1]

For "a name resolved continuously never goes dark": each round is what a client with a caching
resolver that honours the TTL does at worst, and each connect is a new flow the forward hook judges.
Rounds start on a fixed schedule (start + i * interval), so a slow round does not stretch the run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from tests.lab.hostport import parse_hostport
from tests.lab.probe import probe_dns, probe_tcp


def run(
    name: str, qtype: str, port: int, server: tuple[str, int], seconds: float, interval: float, timeout: float
) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    start = time.monotonic()
    while (at := len(rounds) * interval) < seconds:
        time.sleep(max(0.0, start + at - time.monotonic()))
        began = round(time.monotonic() - start, 3)
        answer = probe_dns(name, qtype, server, timeout=timeout)
        addresses = [a["data"] for a in answer["answers"] if a["type"] == qtype.upper()]
        connects = {address: probe_tcp(address, port, timeout)["result"] for address in addresses}
        rounds.append(
            {"t": began, "rcode": answer.get("rcode"), "addresses": addresses, "connects": connects}
        )
    return {"rounds": rounds, "seconds": round(time.monotonic() - start, 3)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.resolveloop")
    p.add_argument("name")
    p.add_argument("type", choices=["A", "AAAA"])
    p.add_argument("port", type=int)
    p.add_argument("--server", type=lambda s: parse_hostport(s, default_port=53), required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=1.0, help="for each lookup and each connect")
    a = p.parse_args(argv)
    print(json.dumps(run(a.name, a.type, a.port, a.server, a.seconds, a.interval, a.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
