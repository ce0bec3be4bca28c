"""A one-shot TCP transfer, both ends: `send` writes bytes and says how the connection ended,
`serve` records what each connection delivered. One JSON line per connection.

    python -m tests.lab.sendrecord serve HOST PORT --seconds 20 [--idle 2]
    python -m tests.lab.sendrecord send HOST PORT TEXT [--timeout 5]

`send` connects, writes TEXT, shuts its side down and reads until the server closes: "closed" when it
does, "reset" on ECONNRESET (a `reject with tcp reset`), "timeout" otherwise. `serve` reads each
connection until end of file or `--idle` seconds without bytes, then prints what arrived and closes it.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import time
from collections.abc import Sequence


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def send(host: str, port: int, text: str, timeout: float) -> dict[str, str]:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            sock.sendall(text.encode())
            _shut_write(sock)
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            return {"result": "reset"}
        except TimeoutError:
            return {"result": "timeout"}
    return {"result": "closed"}


def _shut_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as error:
        # A reset that came back before the shutdown leaves ENOTCONN here; the next recv reports it.
        if error.errno != errno.ENOTCONN:
            raise


def _drain(conn: socket.socket, idle: float) -> bytes:
    conn.settimeout(idle)
    received = b""
    try:
        while chunk := conn.recv(4096):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def serve(host: str, port: int, seconds: float, idle: float) -> None:
    with socket.socket(_family(host), socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen()
        print(json.dumps({"event": "listening"}), flush=True)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            listener.settimeout(left)
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                return
            with conn:
                received = _drain(conn, idle)
            print(
                json.dumps({"peer_port": peer[1], "received": received.decode(errors="replace")}), flush=True
            )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.sendrecord")
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("serve")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--seconds", type=float, default=20.0)
    s.add_argument("--idle", type=float, default=2.0)
    c = sub.add_parser("send")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("text")
    c.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args(argv)
    if a.role == "serve":
        serve(a.host, a.port, a.seconds, a.idle)
    else:
        print(json.dumps(send(a.host, a.port, a.text, a.timeout)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
