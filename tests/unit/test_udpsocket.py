"""UdpEndpoint: bursts are read whole (bounded), and the hook that flushes writes runs inside long ones."""

import asyncio
import socket

from dnsproxy.udpsocket import AFTER_EVERY, BURST, UdpEndpoint


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
