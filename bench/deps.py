"""What dnslib and asyncio-dgram would cost the agent where they could serve: measured, not assumed.

    .venv/bin/python -m bench.deps [--rounds 15] [--calls 10000] [--datagrams 200]

Times, in one run and interleaved (each round runs every case once, in turn, so a noisy neighbour on
the shared machine hits all of them alike; the best round is the cost), the project's own
fqdn_policy/dnsproxy/wire.py against dnslib on the forwarder's paths:

- parsing a typical A answer (one question, a CNAME and two A records, TTL 300, compressed) and
  reading its addresses; and parsing the query it answers;
- building a SERVFAIL and a REFUSED response to a query: wire.error_response from the parsed Query,
  against dnslib's `.reply()` + `.pack()`, once from a DNSRecord already parsed (what dnslib costs
  when it is the parser too) and once including `DNSRecord.parse` (what it costs next to wire.py);

and receiving datagrams on a loopback socket: fqdn_policy.dnsproxy.udpsocket.UdpEndpoint (reads in
bursts from the event loop) against asyncio-dgram's `recv()` (asyncio's datagram transport, each
datagram through an asyncio.Queue). Both sides' addresses and error responses are checked to agree
before anything is timed. Prints one line per case and the ratios; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import statistics
import time
from collections.abc import Callable

import asyncio_dgram
from dnslib import CNAME, QTYPE, RCODE, RR, A, DNSRecord

from fqdn_policy.dnsproxy.codes import RCODE_REFUSED, RCODE_SERVFAIL
from fqdn_policy.dnsproxy.udpsocket import UdpEndpoint
from fqdn_policy.dnsproxy.wire import error_response, parse_answer, parse_query

QNAME = "www.example.com"
TARGET = "edge.example.net"


def typical_answer() -> tuple[bytes, bytes]:
    """A query for QNAME A and its answer: a CNAME to TARGET, two A records on it, TTL 300."""
    query = DNSRecord.question(QNAME, "A")
    query.header.id = 0x1234
    reply = query.reply()
    reply.add_answer(RR(QNAME, QTYPE.CNAME, ttl=300, rdata=CNAME(TARGET)))
    for address in ("192.0.2.10", "192.0.2.11"):
        reply.add_answer(RR(TARGET, QTYPE.A, ttl=300, rdata=A(address)))
    return query.pack(), reply.pack()


def dnslib_addresses(answer: DNSRecord) -> list[str]:
    """The A addresses on the query name's CNAME chain, the way a dnslib-based forwarder would read them."""
    chain = {str(answer.q.qname).lower()}
    for rr in answer.rr:
        if rr.rtype == QTYPE.CNAME and str(rr.rname).lower() in chain:
            chain.add(str(rr.rdata.label).lower())
    return [str(rr.rdata) for rr in answer.rr if rr.rtype == QTYPE.A and str(rr.rname).lower() in chain]


def dnslib_error(record: DNSRecord, rcode: int) -> bytes:
    # aa=0: a forwarder is not authoritative (wire.error_response sets QR, RD as asked, RA and the rcode)
    reply = record.reply(ra=1, aa=0)
    reply.header.rcode = rcode
    return reply.pack()


def wire_cases(
    query_wire: bytes, answer_wire: bytes
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Per case: (the project's way, dnslib's way), each one call."""
    query = parse_query(query_wire)
    record = DNSRecord.parse(query_wire)
    question = query.question
    return {
        "parse the A answer, read its addresses": (
            lambda: parse_answer(answer_wire, question).addresses,
            lambda: dnslib_addresses(DNSRecord.parse(answer_wire)),
        ),
        "parse the query": (lambda: parse_query(query_wire), lambda: DNSRecord.parse(query_wire)),
        "SERVFAIL from a parsed query": (
            lambda: error_response(query, RCODE_SERVFAIL),
            lambda: dnslib_error(record, RCODE.SERVFAIL),
        ),
        "REFUSED from a parsed query": (
            lambda: error_response(query, RCODE_REFUSED),
            lambda: dnslib_error(record, RCODE.REFUSED),
        ),
        "SERVFAIL from the query's bytes": (
            lambda: error_response(parse_query(query_wire), RCODE_SERVFAIL),
            lambda: dnslib_error(DNSRecord.parse(query_wire), RCODE.SERVFAIL),
        ),
    }


def check_agreement(query_wire: bytes, answer_wire: bytes) -> None:
    """Both ways must say the same before their costs are compared."""
    question = parse_query(query_wire).question
    ours = [address for _v, address, _ttl in parse_answer(answer_wire, question).addresses]
    if ours != dnslib_addresses(DNSRecord.parse(answer_wire)):
        raise SystemExit(f"the parsers disagree: {ours} against dnslib's")
    for rcode in (RCODE_SERVFAIL, RCODE_REFUSED):
        mine = DNSRecord.parse(error_response(parse_query(query_wire), rcode))
        theirs = DNSRecord.parse(dnslib_error(DNSRecord.parse(query_wire), rcode))
        if (mine.header.bitmap, mine.header.id, mine.questions) != (
            theirs.header.bitmap,
            theirs.header.id,
            theirs.questions,
        ):
            raise SystemExit(f"the responses for rcode {rcode} differ:\n{mine}\n{theirs}")


def time_calls(fn: Callable[[], object], calls: int) -> float:
    """Microseconds per call of one batch, in thread time (another process's CPU is not ours)."""
    loop = range(calls)
    started = time.thread_time()
    for _ in loop:
        fn()
    return (time.thread_time() - started) / calls * 1e6


async def _receive_ours(
    receiver: socket.socket, sender: socket.socket, datagrams: int, payload: bytes
) -> float:
    done = asyncio.get_running_loop().create_future()
    received = 0

    def receive(_data: bytes, _addr: tuple[str, int]) -> None:
        nonlocal received
        received += 1
        if received == datagrams:
            done.set_result(None)

    endpoint = UdpEndpoint(receiver, receive)
    started = time.perf_counter()
    for _ in range(datagrams):
        sender.send(payload)
    await done
    elapsed = time.perf_counter() - started
    endpoint.close()
    return elapsed / datagrams * 1e6


async def _receive_dgram(
    stream: asyncio_dgram.aio.DatagramServer, sender: socket.socket, datagrams: int, payload: bytes
) -> float:
    started = time.perf_counter()
    for _ in range(datagrams):
        sender.send(payload)
    for _ in range(datagrams):
        await stream.recv()
    return (time.perf_counter() - started) / datagrams * 1e6


async def udp_round(datagrams: int, payload: bytes) -> tuple[float, float]:
    """Microseconds per datagram sent and received on loopback: (UdpEndpoint, asyncio-dgram)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    try:
        ours = await _receive_ours(receiver, sender, datagrams, payload)
    finally:
        receiver.close()
    stream = await asyncio_dgram.bind(("127.0.0.1", 0))
    sender.connect(stream.sockname)
    try:
        theirs = await _receive_dgram(stream, sender, datagrams, payload)
    finally:
        stream.close()
        sender.close()
    return ours, theirs


def report(label: str, ours: list[float], theirs: list[float], unit: str) -> None:
    best_ours, best_theirs = min(ours), min(theirs)
    spread = statistics.median(theirs) / statistics.median(ours)
    print(
        f"{label:<40} ours {best_ours:7.2f} {unit}  theirs {best_theirs:7.2f} {unit}"
        f"  ratio {best_theirs / best_ours:6.1f}x (medians {spread:.1f}x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10000, help="calls per case per round")
    parser.add_argument("--datagrams", type=int, default=200, help="datagrams per UDP case per round")
    args = parser.parse_args(argv)
    query_wire, answer_wire = typical_answer()
    check_agreement(query_wire, answer_wire)
    cases = wire_cases(query_wire, answer_wire)
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    udp: tuple[list[float], list[float]] = ([], [])
    loop = asyncio.new_event_loop()
    gc.disable()  # a collection landing in one side's batch would be charged to it alone
    try:
        for _ in range(args.rounds):
            for name, (ours, theirs) in cases.items():
                timings[name][0].append(time_calls(ours, args.calls))
                timings[name][1].append(time_calls(theirs, args.calls))
            gc.collect()
            u_ours, u_theirs = loop.run_until_complete(udp_round(args.datagrams, query_wire))
            udp[0].append(u_ours)
            udp[1].append(u_theirs)
    finally:
        gc.enable()
        loop.close()
    print(f"answer {len(answer_wire)} bytes, query {len(query_wire)} bytes; best of {args.rounds} rounds")
    print("ours: fqdn_policy.dnsproxy.wire; theirs: dnslib")
    for name, (ours, theirs) in timings.items():
        report(name, ours, theirs, "us")
    print("ours: fqdn_policy.dnsproxy.udpsocket; theirs: asyncio-dgram (loopback, send + receive)")
    report(f"receive {args.datagrams} datagrams", udp[0], udp[1], "us")


if __name__ == "__main__":
    main()
