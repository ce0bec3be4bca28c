"""fqdn_policy.dnsproxy.server's translation of the gate's verdict, over both transports: the upstream's answer when
the write succeeded, SERVFAIL (same ID and question) when it failed. A stand-in forwarder answers; the
listeners run on loopback."""

import asyncio
import concurrent.futures
import socket

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from fqdn_policy.dnsproxy.server import DnsServer, Resolver
from fqdn_policy.dnsproxy.wire import parse_answer


def upstream_answer(query_wire: bytes) -> bytes:
    reply = DNSRecord.parse(query_wire).reply()
    reply.add_answer(RR("www.google.com", QTYPE.A, rdata=A("198.51.100.10"), ttl=300))
    return bytes(reply.pack())


class AnsweringForwarder:
    """Answers every query at once with one A record, as the upstream would."""

    def forward(self, query, wire, callback):
        answer_wire = upstream_answer(wire)
        callback(answer_wire, parse_answer(answer_wire, query.question))

    async def forward_tcp(self, query, wire):
        answer_wire = upstream_answer(wire)
        return answer_wire, parse_answer(answer_wire, query.question)


class VerdictGate:
    """Releases every answer with a fixed verdict, as PolicyGate does once the kernel write is done
    (True) or failed (False); records what it was asked."""

    def __init__(self, ok: bool, later: bool = False):
        self.ok = ok
        self.later = later
        self.admitted = []

    def admit(self, client_ip, transport, query, answer, release):
        self.admitted.append((client_ip, transport, query.qname))
        if self.later:  # the kernel acknowledges on a later turn of the loop
            asyncio.get_running_loop().call_soon(release, self.ok)
        else:
            release(self.ok)

    def failed(self, client_ip, transport, query, reason):
        raise AssertionError(f"no upstream failure expected: {reason}")


QUERY = DNSRecord.question("www.google.com")


def expect(reply: bytes, ok: bool) -> None:
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == QUERY.header.id and str(parsed.q.qname) == "www.google.com."
    if ok:
        assert parsed.header.rcode == RCODE.NOERROR and [str(r.rdata) for r in parsed.rr] == ["198.51.100.10"]
    else:
        assert parsed.header.rcode == RCODE.SERVFAIL and parsed.rr == []


@pytest.mark.parametrize("ok", [True, False])
@pytest.mark.parametrize("later", [False, True])
def test_udp_reply_follows_the_gates_verdict(ok, later):
    async def main():
        gate = VerdictGate(ok, later)
        resolver = Resolver(AnsweringForwarder(), gate)
        sent = []
        resolver.handle_udp(
            bytes(QUERY.pack()), ("10.244.1.10", 5353), lambda data, addr: sent.append((data, addr))
        )
        await asyncio.sleep(0)
        ((reply, addr),) = sent
        assert addr == ("10.244.1.10", 5353)
        expect(reply, ok)
        assert gate.admitted == [("10.244.1.10", "udp", "www.google.com")]
        assert resolver.stats.servfail == (0 if ok else 1)

    asyncio.run(main())


@pytest.mark.parametrize("ok", [True, False])
@pytest.mark.parametrize("later", [False, True])
def test_tcp_reply_follows_the_gates_verdict(ok, later):
    async def main():
        gate = VerdictGate(ok, later)
        resolver = Resolver(AnsweringForwarder(), gate)
        reply = await resolver.handle_tcp_message(bytes(QUERY.pack()), "10.244.1.10")
        expect(reply, ok)
        assert gate.admitted == [("10.244.1.10", "tcp", "www.google.com")]
        assert resolver.stats.servfail == (0 if ok else 1)

    asyncio.run(main())


def tcp_exchange(port: int, query: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(len(query).to_bytes(2, "big") + query)
        length = int.from_bytes(conn.recv(2), "big")
        data = b""
        while len(data) < length:
            data += conn.recv(length - len(data))
        return data


def udp_exchange(port: int, query: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query, ("127.0.0.1", port))
        return sock.recv(4096)


def free_port() -> int:
    """A loopback port free for TCP (UDP takes the same number; the listeners share it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("ok", [True, False])
def test_listeners_carry_the_verdict_on_both_transports(ok):
    async def main():
        port = free_port()
        server = DnsServer(Resolver(AnsweringForwarder(), VerdictGate(ok, later=True)), "127.0.0.1", port)
        await server.start()
        try:
            for exchange in (udp_exchange, tcp_exchange):
                expect(await asyncio.to_thread(exchange, port, bytes(QUERY.pack())), ok)
        finally:
            await server.stop()

    asyncio.run(main())


def test_a_burst_of_tcp_clients_while_the_loop_is_busy_is_queued_not_dropped():
    """The kernel holds handshaken connections the loop has not accepted yet in the listen backlog;
    asyncio's default of 100 drops the SYNs beyond it, so a burst (a truncation storm, or a flood the
    cap is meant to bound) costs clients a one-second SYN retransmit each before the cap even sees
    them. The backlog covers the connection cap."""
    burst = 300

    async def main():
        port = free_port()
        server = DnsServer(Resolver(AnsweringForwarder(), VerdictGate(True)), "127.0.0.1", port)
        await server.start()
        try:

            def connect_all() -> int:
                socks, handshaken = [], 0
                for _ in range(burst):
                    sock = socket.socket()
                    sock.settimeout(0.5)  # below the first SYN retransmit (1 s)
                    try:
                        sock.connect(("127.0.0.1", port))
                        handshaken += 1
                    except OSError:
                        sock.close()
                        break  # the backlog is full: the rest would wait out the timeout too
                    socks.append(sock)
                for sock in socks:
                    sock.close()
                return handshaken

            # the loop is blocked while the thread connects: nothing is accepted meanwhile
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                assert pool.submit(connect_all).result() == burst
        finally:
            await server.stop()

    asyncio.run(main())
