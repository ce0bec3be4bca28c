"""A pod that keeps using a name: every INTERVAL s, look it up, then open a new TCP connection to
each address the answer gave; prints one JSON object with every round.

    python -m tests.lab.resolveloop NAME TYPE PORT --server IP:PORT --seconds 13 [--interval 1]
                                    [--connects 4] [--dns-timeout 2] [--connect-timeout 1]

For "a name resolved continuously never goes dark": each round is what a client with a caching
resolver that honours the TTL does at worst, and each connect is a new flow the forward hook judges.
`--connects N` spreads N connects over each round (right after the lookup, then every interval/N), so
a gap between an element's expiry and the next lookup's write is hit wherever it falls.
A connect counts once the handshake completes (the SYN got through the policy; the SYN-ACK rides
conntrack): no banner is awaited, so the fake internet's own speed is not measured. A connect timeout
of 1 s sees only the first SYN (the retransmission comes after 1 s), so an allowance that appears a
moment late is not hidden by a retry. Rounds start on a fixed schedule (start + i * interval), so a
slow round does not stretch the run.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Sequence
from typing import Any

from tests.lab.hostport import parse_hostport
from tests.lab.probe import probe_dns


def connect(address: str, port: int, timeout: float) -> str:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error: {exc}"
    return "connected"


def run(
    name: str,
    qtype: str,
    port: int,
    server: tuple[str, int],
    seconds: float,
    interval: float,
    dns_timeout: float,
    connect_timeout: float,
    per_round: int = 1,
) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    start = time.monotonic()
    while (at := len(rounds) * interval) < seconds:
        time.sleep(max(0.0, start + at - time.monotonic()))
        began = round(time.monotonic() - start, 3)
        answer = probe_dns(name, qtype, server, timeout=dns_timeout)
        addresses = [a["data"] for a in answer["answers"] if a["type"] == qtype.upper()]
        connects = []
        for k in range(per_round):
            time.sleep(max(0.0, start + at + k * interval / per_round - time.monotonic()))
            t = round(time.monotonic() - start, 3)
            connects += [{"t": t, "to": a, "result": connect(a, port, connect_timeout)} for a in addresses]
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
    p.add_argument("--dns-timeout", type=float, default=2.0, help="for each lookup's answer")
    p.add_argument("--connect-timeout", type=float, default=1.0, help="for each handshake")
    p.add_argument("--connects", type=int, default=1, help="connects per round, spread over its interval")
    a = p.parse_args(argv)
    result = run(
        a.name, a.type, a.port, a.server, a.seconds, a.interval, a.dns_timeout, a.connect_timeout, a.connects
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
