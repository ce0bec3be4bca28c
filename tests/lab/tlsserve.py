"""A server for two names on one address, as a CDN serves them: TLS on one port, plain HTTP on another,
and a line per connection saying what reached it, run inside ``inet``.

    python -m tests.lab.tlsserve --listen 198.51.100.10 --listen 2001:db8:100::10 \\
        --tls-port 443 --http-port 80 --events EVENTS.jsonl --ready-file READY

Each connection's line: its peer, how many bytes arrived before the server did anything (peeked, so
"the server saw no bytes" is measured, not assumed; 0 when none came within --first-bytes-wait), and
for TLS the server_name the handshake presented and whether it completed; for HTTP the Host. Both
answer `HTTP/1.0 200` with body `hello NAME`. Certificates: tests/lab/certs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CERTS = Path(__file__).with_name("certs")
HEAD_LIMIT = 16384


class Events:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        with self.lock, self.path.open("a") as out:
            out.write(json.dumps(event) + "\n")


def _read_head(conn: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _host_of(head: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode(errors="replace")
    return None


def _reply(conn: socket.socket | ssl.SSLSocket, name: str | None) -> None:
    body = f"hello {name}".encode()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def _serve(
    conn: socket.socket, peer: str, port: int, tls: ssl.SSLContext | None, wait: float, events: Events
) -> None:
    event: dict[str, Any] = {"port": port, "peer": peer, "tls": tls is not None}
    try:
        conn.settimeout(wait)
        try:
            event["bytes_before"] = len(conn.recv(HEAD_LIMIT, socket.MSG_PEEK))
        except (TimeoutError, OSError):
            event["bytes_before"] = 0
        if not event["bytes_before"]:
            return
        conn.settimeout(30.0)
        if tls is None:
            event["host"] = _host_of(_read_head(conn))
            _reply(conn, event["host"])
            return
        presented: list[str | None] = []
        context = _context_noting(tls, presented)
        with context.wrap_socket(conn, server_side=True) as secured:
            event["sni"] = presented[0] if presented else None
            event["handshake"] = True
            _read_head(secured)
            _reply(secured, event["sni"])
    except (OSError, ssl.SSLError) as error:
        event.setdefault("handshake", False)
        event["error"] = f"{type(error).__name__}: {error}"
    finally:
        conn.close()
        events.write(event)


def _context_noting(base: ssl.SSLContext, presented: list[str | None]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERTS / "server.pem", CERTS / "server.key")

    def note(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        presented.append(name)

    context.sni_callback = note  # type: ignore[assignment]
    return context


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    return sock


def _accept_loop(
    sock: socket.socket, port: int, tls: ssl.SSLContext | None, wait: float, events: Events
) -> None:
    while True:
        conn, addr = sock.accept()
        threading.Thread(target=_serve, args=(conn, addr[0], port, tls, wait, events), daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.tlsserve")
    p.add_argument("--listen", action="append", required=True, metavar="ADDRESS")
    p.add_argument("--tls-port", type=int, default=443)
    p.add_argument("--http-port", type=int, default=80)
    p.add_argument("--first-bytes-wait", type=float, default=2.0)
    p.add_argument("--events", type=Path, required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    events = Events(a.events)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(CERTS / "server.pem", CERTS / "server.key")
    for host in a.listen:
        for port, context in ((a.tls_port, tls), (a.http_port, None)):
            sock = _listen(host, port)
            args = (sock, port, context, a.first_bytes_wait, events)
            threading.Thread(target=_accept_loop, args=args, daemon=True).start()
    tmp = a.ready_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid()}))
    os.replace(tmp, a.ready_file)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    raise SystemExit(main())
