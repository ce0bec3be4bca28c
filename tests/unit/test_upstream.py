"""The forwarder against scripted upstreams on loopback: spoofing, failover, time bounds, overload."""

import asyncio
import socket
import time

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from fqdn_policy.dnsproxy.upstream import Forwarder, UpstreamAddress, UpstreamConfig
from fqdn_policy.dnsproxy.wire import parse_query


class ScriptedUpstream(asyncio.DatagramProtocol):
    """Records queries; answers only when the test says so."""

    def __init__(self):
        self.queries = []  # (wire, addr)
        self.arrived = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.queries.append((data, addr))
        self.arrived.set()

    def answer(self, index=-1, *, ident=None, name=None, address="198.51.100.10", via=None):
        data, addr = self.queries[index]
        q = DNSRecord.parse(data)
        if name is not None:
            q = DNSRecord.question(name)
            q.header.id = DNSRecord.parse(data).header.id
        reply = q.reply()
        reply.add_answer(RR(str(q.q.qname), QTYPE.A, rdata=A(address), ttl=60))
        if ident is not None:
            reply.header.id = ident
        (via or self.transport).sendto(reply.pack(), addr)


async def start_upstream():
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(ScriptedUpstream, local_addr=("127.0.0.1", 0))
    return proto, UpstreamAddress("127.0.0.1", transport.get_extra_info("sockname")[1])


def query(name="www.google.com"):
    wire = DNSRecord.question(name).pack()
    return parse_query(wire), wire


async def forward(forwarder, name="www.google.com"):
    q, wire = query(name)
    future = asyncio.get_running_loop().create_future()
    forwarder.forward(q, wire, lambda w, a: future.done() or future.set_result((w, a, time.monotonic())))
    return q, future


@pytest.mark.timeout(20)
def test_answer_is_returned_with_the_clients_id():
    async def main():
        upstream, address = await start_upstream()
        forwarder = Forwarder(UpstreamConfig((address,), timeout=1.0, attempts=1))
        await forwarder.start()
        q, future = await forward(forwarder)
        await upstream.arrived.wait()
        upstream.answer()
        wire, answer, _ = await asyncio.wait_for(future, 2)
        assert DNSRecord.parse(wire).header.id == q.id
        assert answer.addresses == ((4, "198.51.100.10", 60),)
        assert forwarder.in_flight == 0
        forwarder.close()

    asyncio.run(main())


@pytest.mark.timeout(20)
def test_spoofed_answers_are_discarded():
    async def main():
        upstream, address = await start_upstream()
        forwarder = Forwarder(UpstreamConfig((address,), timeout=1.0, attempts=1))
        await forwarder.start()
        _q, future = await forward(forwarder)
        await upstream.arrived.wait()
        real_id = DNSRecord.parse(upstream.queries[0][0]).header.id
        upstream.answer(ident=(real_id + 1) % 65536, address="203.0.113.66")  # wrong ID
        upstream.answer(name="www.evil.example", address="203.0.113.67")  # wrong question
        # right ID and question, but from another port: a connected socket never delivers it
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.1", 0))
        reply = DNSRecord.parse(upstream.queries[0][0]).reply()
        reply.add_answer(RR("www.google.com", QTYPE.A, rdata=A("203.0.113.68"), ttl=60))
        other.sendto(reply.pack(), upstream.queries[0][1])
        other.close()
        await asyncio.sleep(0.2)
        assert not future.done()
        assert forwarder.stats.rejected == 2
        upstream.answer()
        _wire, answer, _ = await asyncio.wait_for(future, 2)
        assert answer.addresses == ((4, "198.51.100.10", 60),)
        # a late duplicate of the real answer is dropped too
        upstream.answer(address="203.0.113.69")
        await asyncio.sleep(0.1)
        assert forwarder.stats.rejected == 3 and forwarder.stats.answered == 1
        forwarder.close()

    asyncio.run(main())


@pytest.mark.timeout(20)
def test_silent_upstream_fails_over_then_servfail_within_the_bound():
    async def main():
        dead, dead_address = await start_upstream()
        live, live_address = await start_upstream()
        forwarder = Forwarder(UpstreamConfig((dead_address, live_address), timeout=0.3, attempts=2))
        await forwarder.start()
        _q, future = await forward(forwarder)
        await live.arrived.wait()  # moved to the second upstream after 0.3 s
        assert len(dead.queries) == 1
        live.answer()
        _, answer, _ = await asyncio.wait_for(future, 2)
        assert answer.rcode == 0
        # both silent: the caller hears None within attempts x timeout (+ sweep granularity)
        started = time.monotonic()
        _q, future = await forward(forwarder, "other.example.com")
        wire, answer, finished = await asyncio.wait_for(future, 3)
        assert wire is None and answer is None
        assert finished - started < 2 * 0.3 + 0.2
        assert forwarder.stats.failed == 1 and forwarder.in_flight == 0
        forwarder.close()

    asyncio.run(main())


@pytest.mark.timeout(20)
def test_in_flight_is_bounded():
    async def main():
        _upstream, address = await start_upstream()
        forwarder = Forwarder(UpstreamConfig((address,), timeout=5.0, attempts=1, max_in_flight=3))
        await forwarder.start()
        futures = [(await forward(forwarder, f"n{i}.example.com"))[1] for i in range(5)]
        await asyncio.sleep(0.1)
        refused = [f for f in futures if f.done()]
        assert len(refused) == 2 and all(f.result()[0] is None for f in refused)
        assert forwarder.stats.overloaded == 2 and forwarder.in_flight == 3
        forwarder.close()

    asyncio.run(main())


@pytest.mark.timeout(20)
def test_each_answer_reports_its_round_trip():
    """The upstream-latency histogram's feed: the time from this attempt's send to its answer."""

    async def main():
        upstream, address = await start_upstream()
        observed = []
        forwarder = Forwarder(UpstreamConfig((address,), timeout=1.0, attempts=1), on_latency=observed.append)
        await forwarder.start()
        _, future = await forward(forwarder)
        await upstream.arrived.wait()
        await asyncio.sleep(0.05)  # the upstream takes its time
        upstream.answer()
        await asyncio.wait_for(future, 2)
        forwarder.close()
        return observed

    (seconds,) = asyncio.run(main())
    assert 0.05 <= seconds < 1.0


def test_after_answers_runs_once_the_burst_was_delivered():
    async def main():
        upstream, address = await start_upstream()
        forwarder = Forwarder(UpstreamConfig((address,), timeout=1.0, attempts=1))
        events = []
        forwarder.after_answers = lambda: events.append("after")
        await forwarder.start()
        q, wire = query()
        forwarder.forward(q, wire, lambda w, a: events.append("answer"))
        await upstream.arrived.wait()
        upstream.answer()
        for _ in range(200):
            if events:
                break
            await asyncio.sleep(0.01)
        # the answer callback ran first, then the hook, in the same burst
        assert events == ["answer", "after"]
        forwarder.close()

    asyncio.run(main())
