"""A unique-name DNS flood from inside a pod, bounded in count and time.

    python -m tests.lab.dnsflood --server 10.244.1.1:53 --suffix flood.example --count 20000

Asks `n0.<suffix>` .. `n<count-1>.<suffix>` (type A) over one UDP socket with at most `--window`
queries unanswered at once; an unanswered one is asked again after `--timeout`, at most `--tries`
times. Stops at `--seconds` whatever is left. Prints one JSON object: sent (queries, retries
included), names answered NOERROR with an address, names answered otherwise, names never answered,
and the seconds it took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from tests.lab.hostport import parse_hostport


def query_wire(ident: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 1, 1)


async def run(
    server: tuple[str, int], suffix: str, count: int, window: int, timeout: float, tries: int, seconds: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in server[0] else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect(server)
    pending: dict[int, tuple[int, float, int]] = {}  # id -> (name number, sent at, tries)
    out = {"sent": 0, "answered": 0, "other_rcode": 0, "unanswered": 0}
    started = time.monotonic()
    next_name = 0

    def on_readable() -> None:
        while True:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                continue
            if len(data) < 12:
                continue
            ident, flags, _, ancount = struct.unpack("!HHHH", data[:8])
            if pending.pop(ident, None) is None:
                continue  # a late answer to a retried query
            out["answered" if flags & 0xF == 0 and ancount else "other_rcode"] += 1

    loop.add_reader(sock.fileno(), on_readable)

    def send(ident: int, number: int, attempt: int) -> None:
        pending[ident] = (number, time.monotonic(), attempt)
        sock.send(query_wire(ident, f"n{number}.{suffix}"))
        out["sent"] += 1

    try:
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            for ident, (number, at, attempt) in list(pending.items()):
                if now - at >= timeout:
                    if attempt < tries:
                        send(ident, number, attempt + 1)
                    else:
                        del pending[ident]
                        out["unanswered"] += 1
            while len(pending) < window and next_name < count:
                send(next_name & 0xFFFF, next_name, 1)  # ids are unique while < 65,536 are out
                next_name += 1
            if next_name >= count and not pending:
                break
            await asyncio.sleep(0.002)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    out["unanswered"] += len(pending) + (count - next_name)
    out["seconds"] = round(time.monotonic() - started, 2)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.dnsflood")
    p.add_argument("--server", type=lambda t: parse_hostport(t, default_port=53), required=True)
    p.add_argument("--suffix", default="flood.example")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--tries", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    result = asyncio.run(
        run(
            args.server,
            args.suffix,
            args.count,
            args.window,
            args.timeout,
            args.tries,
            min(args.seconds, 120.0),
        )
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
