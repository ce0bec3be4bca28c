"""UdpEndpoint: bursts are read whole (bounded), and the hook that flushes writes runs inside long ones."""

import asyncio
import socket

from fqdn_policy.dnsproxy.udpsocket import AFTER_EVERY, BURST, UdpEndpoint


def _drained(datagrams: int) -> list[str]:
    async def main() -> list[str]:
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        events: list[str] = []
        for i in range(datagrams):
            peer.send(b"%d" % i)
        endpoint = UdpEndpoint(
            ours, lambda data, _: events.append(data.decode()), lambda: events.append("after")
        )
        for _ in range(100):
            await asyncio.sleep(0.01)
            if sum(e != "after" for e in events) == datagrams:
                break
        endpoint.close()
        peer.close()
        return events

    return asyncio.run(main())


def test_the_hook_runs_every_few_datagrams_and_at_the_end_of_the_burst():
    events = _drained(2 * AFTER_EVERY + 3)
    hooks = [i for i, e in enumerate(events) if e == "after"]
    assert hooks == [AFTER_EVERY, 2 * AFTER_EVERY + 1, 2 * AFTER_EVERY + 5]
    assert [e for e in events if e != "after"] == [str(i) for i in range(2 * AFTER_EVERY + 3)]


def test_a_burst_that_ends_on_the_interval_runs_the_hook_once_per_interval():
    events = _drained(AFTER_EVERY)
    assert events.count("after") == 1 and events[-1] == "after"


def test_more_than_a_burst_is_read_over_several_loop_turns_and_nothing_is_lost():
    events = _drained(BURST + 5)
    assert [e for e in events if e != "after"] == [str(i) for i in range(BURST + 5)]
    assert events[-1] == "after"


def test_a_send_after_an_icmp_error_still_goes_out():
    """A connected socket keeps the port-unreachable of an earlier datagram and fails the next call
    with it; the upstream that has come back must still get the query."""

    async def main() -> bytes:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now: the first datagram draws an ICMP error
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        endpoint = UdpEndpoint(sock, lambda data, _: None)
        endpoint._loop.remove_reader(sock.fileno())  # keep the error pending, as a busy loop would
        endpoint.sock.send(b"lost")
        await asyncio.sleep(0.05)
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        upstream.bind(("127.0.0.1", port))  # the upstream is back
        upstream.settimeout(2)
        endpoint.send(b"query")
        try:
            return upstream.recv(100)
        finally:
            upstream.close()
            endpoint.paused = True  # its reader is already gone
            endpoint.close()

    assert asyncio.run(main()) == b"query"
