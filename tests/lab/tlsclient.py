"""A TLS or HTTP client that says how its connection ended, run inside a pod namespace.

    python -m tests.lab.tlsclient ADDRESS PORT --name good.example [--no-sni] [--split N] [--http]

TLS goes through ssl.MemoryBIO over a plain socket, so `--split N` can send the ClientHello's first
N bytes and the rest as two segments (TCP_NODELAY, a pause between them), as a client whose
ClientHello outgrows one segment does. Prints one JSON line: result ok (with the reply body), reset,
timeout, or error.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

CA = Path(__file__).with_name("certs") / "ca.pem"


def _request(name: str) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()


def _http(sock: socket.socket, name: str) -> bytes:
    sock.sendall(_request(name))
    return _read_all(sock.recv)


def _read_all(recv) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while True:
        chunk = recv(65536)
        if not chunk:
            return data
        data += chunk


def _tls(sock: socket.socket, name: str, sni: bool, split: int) -> bytes:
    context = ssl.create_default_context(cafile=str(CA))
    if not sni:  # no server_hostname: Python then sends no server_name extension
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name if sni else None)
    first = True

    def flush() -> None:
        nonlocal first
        data = outgoing.read()
        if first and split and len(data) > split:
            sock.sendall(data[:split])
            time.sleep(0.05)
            data = data[split:]
        first = False
        if data:
            sock.sendall(data)

    def pump() -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed by the peer")
        incoming.write(chunk)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            pump()
    tls.write(_request(name))
    flush()
    body = b""
    while True:
        try:
            chunk = tls.read(65536)
        except ssl.SSLWantReadError:
            try:
                pump()
            except ConnectionResetError:
                return body
            continue
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return body
        if not chunk:
            return body
        body += chunk


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.tlsclient")
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.add_argument("--name", required=True)
    p.add_argument("--no-sni", action="store_true")
    p.add_argument("--split", type=int, default=0)
    p.add_argument("--http", action="store_true")
    p.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args(argv)
    out: dict[str, object]
    try:
        with socket.create_connection((a.address, a.port), timeout=a.timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reply = _http(sock, a.name) if a.http else _tls(sock, a.name, not a.no_sni, a.split)
        body = reply.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
        out = {"result": "ok" if reply else "closed", "body": body}
    except ConnectionResetError:
        out = {"result": "reset"}
    except TimeoutError:
        out = {"result": "timeout"}
    except (OSError, ssl.SSLError) as error:
        out = {"result": "error", "error": f"{type(error).__name__}: {error}"}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
