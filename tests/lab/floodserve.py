"""A hostile authoritative server for flood tests, run in ``inet`` beside the fake internet.

    python -m tests.lab.floodserve --listen 198.51.100.53:5353 --suffix flood.example --ready-file R

Answers every A query under the suffix with its own address and TTL 86,400, as issue 17's attacker
did: `n<i>.<suffix>` gets the i-th address of a cycle of 390 documentation addresses (203.0.113.10-249,
198.51.100.100-249: none is a lab host or the node's), `first.<suffix>` the banner host 198.51.100.30.
`www.google.com` is 198.51.100.10 (TTL 300), like the fake internet's zone; anything else NXDOMAIN.
No statistics are kept per name (the fake internet's per-query stats file would cost O(names) a query).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from tests.lab.hostport import parse_hostport

FLOOD_TTL = 86_400
CYCLE = [f"203.0.113.{i}" for i in range(10, 250)] + [f"198.51.100.{i}" for i in range(100, 250)]
FIXED = {"www.google.com": ("198.51.100.10", 300)}


def address_for(name: str, suffix: str) -> tuple[str, int] | None:
    if name in FIXED:
        return FIXED[name]
    label, _, rest = name.partition(".")
    if rest != suffix:
        return None
    if label == "first":
        return "198.51.100.30", FLOOD_TTL
    if label.startswith("n") and label[1:].isdigit():
        return CYCLE[int(label[1:]) % len(CYCLE)], FLOOD_TTL
    return None


def reply(data: bytes, suffix: str) -> bytes | None:
    try:
        query = DNSRecord.parse(data)
    except Exception:  # a hostile lab server ignores what it cannot read
        return None
    answer = query.reply()
    name = str(query.q.qname).rstrip(".").lower()
    found = address_for(name, suffix)
    if found is None:
        answer.header.rcode = RCODE.NXDOMAIN
    elif query.q.qtype == QTYPE.A:
        answer.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(found[0]), ttl=found[1]))
    return answer.pack()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = reply(data, self.suffix)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def serve(listen: tuple[str, int], suffix: str, ready: Path | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(suffix), local_addr=listen)
    if ready is not None:
        tmp = ready.with_name(f".{ready.name}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "listen": list(listen)}))
        os.replace(tmp, ready)
    await stop.wait()
    transport.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.floodserve")
    p.add_argument("--listen", type=lambda t: parse_hostport(t, default_port=53), required=True)
    p.add_argument("--suffix", default="flood.example")
    p.add_argument("--ready-file", type=Path)
    args = p.parse_args(argv)
    asyncio.run(serve(args.listen, args.suffix, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
