"""Hostile DNS-over-TCP clients, run from inside a pod; each prints one JSON object.

    python -m tests.lab.tcpabuse huge  --server 10.244.1.1:53 [--count 200]
    python -m tests.lab.tcpabuse trickle --server 10.244.1.1:53 [--interval 1.0]
    python -m tests.lab.tcpabuse flood --server 10.244.1.1:53 --count 1500 --hold 6

huge: connections that send the largest length prefix (65,535) and nothing else; reports how long the
server took to close each. trickle: one query sent a byte per `--interval`; reports when the server
closed it and how many bytes it had taken. flood: opens `--count` connections, then reports how many
the server closed at once and how many it kept, holding them for `--hold` seconds before closing.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from dnslib import DNSRecord

from tests.lab.hostport import parse_hostport


def _connect(server: tuple[str, int], timeout: float = 3.0) -> socket.socket:
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(server)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection, or None if it stayed open that long."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return round(time.monotonic() - start, 3)
    except TimeoutError:
        return None
    except OSError:
        return round(time.monotonic() - start, 3)


def huge(server: tuple[str, int], count: int, wait: float) -> dict[str, Any]:
    times = []
    for _ in range(count):
        with _connect(server) as sock:
            sock.sendall(b"\xff\xff")
            times.append(_closed_within(sock, wait))
    closed = [t for t in times if t is not None]
    return {"connections": count, "closed": len(closed), "max_seconds": max(closed, default=None)}


def trickle(server: tuple[str, int], interval: float, limit: float) -> dict[str, Any]:
    wire = DNSRecord.question("www.google.com").pack()
    message = struct.pack("!H", len(wire)) + wire
    start = time.monotonic()
    sent = 0
    with _connect(server) as sock:
        for byte in message:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sent += 1
            if _closed_within(sock, interval) is not None or time.monotonic() - start > limit:
                break
        closed = sent < len(message) or _closed_within(sock, 0.1) is not None
    return {
        "message_bytes": len(message),
        "bytes_sent": sent,
        "closed_by_server": closed,
        "seconds": round(time.monotonic() - start, 3),
    }


def flood(server: tuple[str, int], count: int, settle: float, hold: float) -> dict[str, Any]:
    socks: list[socket.socket] = []
    failed = 0
    started = time.monotonic()
    for _ in range(count):
        try:
            socks.append(_connect(server))
        except OSError:
            failed += 1
    opened_at = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed: set[int] = set()
    while time.monotonic() - opened_at < settle:
        for key, _ in selector.select(timeout=0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed.add(sock.fileno())
                selector.unregister(sock)
    kept = len(socks) - len(closed)
    print(json.dumps({"opened": len(socks), "connect_failed": failed, "closed_at_once": len(closed),
                      "kept": kept, "open_seconds": round(opened_at - started, 2)}), flush=True)  # fmt: skip
    time.sleep(max(0.0, hold - (time.monotonic() - opened_at)))
    for sock in socks:
        sock.close()
    return {"released": len(socks)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.tcpabuse")
    p.add_argument("mode", choices=["huge", "trickle", "flood"])
    p.add_argument("--server", type=lambda t: parse_hostport(t, default_port=53), required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--wait", type=float, default=5.0, help="huge: longest wait for the close")
    p.add_argument("--interval", type=float, default=1.0, help="trickle: seconds between bytes")
    p.add_argument("--limit", type=float, default=30.0, help="trickle: give up after this long")
    p.add_argument("--settle", type=float, default=2.0, help="flood: seconds to watch for closes")
    p.add_argument("--hold", type=float, default=5.0, help="flood: seconds to keep connections open")
    a = p.parse_args(argv)
    if a.mode == "huge":
        out = huge(a.server, a.count, a.wait)
    elif a.mode == "trickle":
        out = trickle(a.server, a.interval, a.limit)
    else:
        out = flood(a.server, a.count, a.settle, a.hold)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
