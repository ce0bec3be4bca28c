"""Connectivity probes run from inside a pod; each prints exactly one JSON object.

    python -m tests.lab.probe tcp HOST PORT [--timeout 1.0]
    python -m tests.lab.probe udp HOST PORT [--timeout 1.0]
    python -m tests.lab.probe dns NAME TYPE --server IP:PORT [--tcp] [--timeout 2]
                                            [--edns SIZE] [--id N]

Results distinguish how a connection failed, because an enforcer's job is precisely to
make some fail in a specific way: a silent drop is "timeout", a TCP RST or ICMP port
unreachable is "refused", an ICMP host/net/admin unreachable is "unreachable".
Hosts must be literal addresses: the probe never resolves names, so it cannot leak a
lookup to whatever resolver the machine has.
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from dnslib import EDNS0, QTYPE, RCODE, DNSError, DNSRecord

from tests.lab.hostport import parse_hostport

_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM})


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


def _sockaddr(host: str, port: int, kind: socket.SocketKind) -> tuple[socket.AddressFamily, Any]:
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_NUMERICHOST)[0]
    return family, addr


def _classify(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError | ConnectionResetError):
        return "refused"
    # EACCES/EPERM: a local nftables reject or an ICMP admin-prohibited answer.
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return "unreachable"
    return "error"


def _failure(exc: BaseException, start: float, **extra: Any) -> dict[str, Any]:
    result = {"result": _classify(exc), "elapsed_ms": _ms(start), **extra}
    if result["result"] == "error":
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while b"\n" not in data:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def probe_tcp(host: str, port: int, timeout: float = 1.0) -> dict[str, Any]:
    """Result "connected" only once the handshake completed and the banner arrived; ``stage``
    says whether a failure happened during connect or while waiting for the banner."""
    start = time.monotonic()
    deadline = start + timeout
    family, addr = _sockaddr(host, port, socket.SOCK_STREAM)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError as exc:
            return _failure(exc, start, stage="connect", banner="")
        try:
            data = _read_line(sock, deadline)
        except OSError as exc:
            return _failure(exc, start, stage="banner", banner="")
    if not data:
        return {"result": "error", "elapsed_ms": _ms(start), "stage": "banner", "banner": "",
                "error": "closed without banner"}  # fmt: skip
    return {"result": "connected", "elapsed_ms": _ms(start), "banner": data.decode(errors="replace").strip()}


def probe_hold(
    host: str, port: int, seconds: float, interval: float = 0.25, timeout: float = 1.0
) -> dict[str, Any]:
    """Keep one TCP connection to an echo service busy for `seconds`: "held" if every line came back.

    For flows that must outlive the allowance they were opened under (conntrack keeps them)."""
    start = time.monotonic()
    family, addr = _sockaddr(host, port, socket.SOCK_STREAM)
    exchanged = 0
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError as exc:
            return _failure(exc, start, stage="connect", banner="")
        while time.monotonic() - start < seconds:
            try:
                sock.sendall(b"ping\n")
                if _read_line(sock, time.monotonic() + timeout) != b"ping\n":
                    return {"result": "broken", "elapsed_ms": _ms(start), "exchanged": exchanged}
            except OSError as exc:
                return {
                    **_failure(exc, start, stage="hold", banner=""),
                    "result": "broken",
                    "exchanged": exchanged,
                }
            exchanged += 1
            time.sleep(interval)
    return {"result": "held", "elapsed_ms": _ms(start), "exchanged": exchanged}


def probe_udp(host: str, port: int, timeout: float = 1.0, payload: bytes = b"probe\n") -> dict[str, Any]:
    start = time.monotonic()
    family, addr = _sockaddr(host, port, socket.SOCK_DGRAM)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            # Connected, so an ICMP port unreachable surfaces as ConnectionRefusedError.
            sock.connect(addr)
            sock.send(payload)
            data = sock.recv(65535)
        except OSError as exc:
            return _failure(exc, start)
    return {"result": "answered", "elapsed_ms": _ms(start), "reply": data.decode(errors="replace").strip()}


def _rr_json(rr: Any) -> dict[str, Any]:
    return {"name": str(rr.rname), "type": QTYPE[rr.rtype], "ttl": rr.ttl, "data": str(rr.rdata)}


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("connection closed mid-message")
        data += chunk
    return data


def _exchange(wire: bytes, server: tuple[str, int], tcp: bool, timeout: float, sport: int = 0) -> bytes:
    family, addr = _sockaddr(server[0], server[1], socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        if sport:  # a fixed source port: the same conntrack entry as an earlier query (one flow)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
        sock.connect(addr)
        if tcp:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", _recv_exact(sock, 2))
            return _recv_exact(sock, length)
        sock.send(wire)
        return sock.recv(65535)


def probe_dns(
    name: str,
    qtype: str,
    server: tuple[str, int],
    *,
    tcp: bool = False,
    timeout: float = 2.0,
    edns: int | None = None,
    qid: int | None = None,
    sport: int = 0,
) -> dict[str, Any]:
    """One query, one reply. ``id_ok``/``question_ok`` check the reply matches the query
    byte for byte in the question (including case, which the probe sends as given)."""
    query = DNSRecord.question(name, qtype.upper())
    query.header.id = random.randrange(1, 65536) if qid is None else qid
    if edns is not None:
        query.add_ar(EDNS0(udp_len=edns))
    start = time.monotonic()
    try:
        raw = _exchange(bytes(query.pack()), server, tcp, timeout, sport)
    except OSError as exc:
        return _failure(exc, start, rcode=None, answers=[], tc=False, id_ok=False)
    try:
        reply = DNSRecord.parse(raw)
    except (DNSError, struct.error, IndexError, ValueError) as exc:
        return {"result": "error", "error": f"unparsable reply: {exc}", "rcode": None, "answers": [],
                "tc": False, "id_ok": False, "elapsed_ms": _ms(start)}  # fmt: skip
    echoed = [(q.qname.label, q.qtype) for q in reply.questions]
    return {
        "result": "answered",
        "rcode": RCODE[reply.header.rcode],
        "answers": [_rr_json(rr) for rr in reply.rr],
        "authority": [_rr_json(rr) for rr in reply.auth],
        "tc": bool(reply.header.tc),
        "aa": bool(reply.header.aa),
        "id_ok": reply.header.id == query.header.id,
        "question_ok": echoed == [(query.q.qname.label, query.q.qtype)],
        "edns": any(rr.rtype == QTYPE.OPT for rr in reply.ar),
        "size": len(raw),
        "elapsed_ms": _ms(start),
    }


def _server(text: str) -> tuple[str, int]:
    return parse_hostport(text, default_port=53)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.lab.probe")
    sub = p.add_subparsers(dest="kind", required=True)
    for kind, default_timeout in (("tcp", 1.0), ("udp", 1.0)):
        s = sub.add_parser(kind)
        s.add_argument("host")
        s.add_argument("port", type=int)
        s.add_argument("--timeout", type=float, default=default_timeout)
    h = sub.add_parser("hold")
    h.add_argument("host")
    h.add_argument("port", type=int)
    h.add_argument("--seconds", type=float, required=True)
    h.add_argument("--timeout", type=float, default=1.0)
    d = sub.add_parser("dns")
    d.add_argument("name")
    d.add_argument("type")
    d.add_argument("--server", type=_server, required=True, metavar="IP:PORT")
    d.add_argument("--tcp", action="store_true")
    d.add_argument("--timeout", type=float, default=2.0)
    d.add_argument("--edns", type=int, default=None, metavar="SIZE", help="add OPT with this UDP size")
    d.add_argument("--id", type=int, default=None, dest="qid")
    d.add_argument("--sport", type=int, default=0, help="send from this source port (default: any)")
    return p


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.kind == "tcp":
        return probe_tcp(args.host, args.port, args.timeout)
    if args.kind == "udp":
        return probe_udp(args.host, args.port, args.timeout)
    if args.kind == "hold":
        return probe_hold(args.host, args.port, args.seconds, timeout=args.timeout)
    return probe_dns(
        args.name,
        args.type,
        args.server,
        tcp=args.tcp,
        timeout=args.timeout,
        edns=args.edns,
        qid=args.qid,
        sport=args.sport,
    )


def main(argv: Sequence[str] | None = None) -> int:
    print(json.dumps(run(argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
