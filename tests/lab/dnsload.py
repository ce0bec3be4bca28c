"""A bounded, steady DNS load from inside a pod, counting what a real stub resolver would see.

    python -m tests.lab.dnsload --server 10.244.1.1:53 --name www.google.com --rate 500 --seconds 6

Each query goes out on its own socket (a new source port, as stub resolvers do), waits `--timeout`,
then is retried once on a new socket. Prints one JSON object: sent, answered on the first try,
answered on the retry, failed (no answer after the retry), and answers that were not NOERROR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from dnslib import DNSRecord

from tests.lab.hostport import parse_hostport


async def _ask(server: tuple[str, int], name: str, timeout: float) -> int | None:
    """The answer's rcode, or None on timeout."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    query = DNSRecord.question(name)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(server)
        sock.send(query.pack())
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), remaining)
            except (TimeoutError, ConnectionRefusedError):
                return None
            reply = DNSRecord.parse(data)
            if reply.header.id == query.header.id:
                return int(reply.header.rcode)


async def _one(server: tuple[str, int], name: str, timeout: float, counts: dict[str, int]) -> None:
    rcode = await _ask(server, name, timeout)
    if rcode is None:
        rcode = await _ask(server, name, timeout)
        counts["retried_ok" if rcode is not None else "failed"] += 1
    else:
        counts["first_try"] += 1
    if rcode not in (None, 0):
        counts["not_noerror"] += 1


async def run(
    server: tuple[str, int], names: list[str], rate: float, seconds: float, timeout: float
) -> dict[str, Any]:
    counts = {"sent": 0, "first_try": 0, "retried_ok": 0, "failed": 0, "not_noerror": 0}
    tasks = []
    start = time.monotonic()
    interval = 1.0 / rate
    while time.monotonic() - start < seconds:
        name = names[counts["sent"] % len(names)]
        tasks.append(asyncio.create_task(_one(server, name, timeout, counts)))
        counts["sent"] += 1
        next_at = start + counts["sent"] * interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*tasks)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.dnsload")
    p.add_argument("--server", type=lambda t: parse_hostport(t, default_port=53), required=True)
    p.add_argument("--name", action="append", required=True)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=0.5)
    args = p.parse_args(argv)
    result = asyncio.run(run(args.server, args.name, args.rate, min(args.seconds, 60.0), args.timeout))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
