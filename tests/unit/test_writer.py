"""SetWriter's group commit, with a recording libnftables stand-in: no kernel needed."""

import asyncio

from fqdn_policy.enforcer import writer as writer_module
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.enforcer.writer import SetWriter


class RecordingNft:
    def __init__(self):
        self.calls = []

    def run(self, commands):
        self.calls.append(list(commands))
        return []


def test_requests_of_one_turn_go_in_one_transaction():
    async def main():
        nft = RecordingNft()
        writer = SetWriter(lambda: nft)
        done = []
        writer.submit([{"a": 1}], done.append)
        writer.submit([{"b": 2}], done.append)
        assert done == []  # nothing is acknowledged before the kernel call
        await asyncio.sleep(0)
        assert nft.calls == [[{"a": 1}, {"b": 2}]] and done == [None, None]

    asyncio.run(main())


def test_flush_writes_now_and_the_scheduled_call_finds_nothing():
    async def main():
        nft = RecordingNft()
        writer = SetWriter(lambda: nft)
        done = []
        writer.submit([{"a": 1}], done.append)
        writer.flush()
        assert nft.calls == [[{"a": 1}]] and done == [None]
        await asyncio.sleep(0)
        assert nft.calls == [[{"a": 1}]] and writer.stats.transactions == 1

    asyncio.run(main())


class SteppedClock:
    """Stands in for the writer's `time` module: perf_counter reads a clock the kernel stand-in moves."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now


class SlowNft(RecordingNft):
    """A kernel call that takes `seconds` on the stepped clock."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock = clock
        self.seconds = seconds

    def run(self, commands):
        self.clock.now += self.seconds
        return super().run(commands)


def test_each_transaction_reports_its_duration(monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(writer_module, "time", clock)

    async def main():
        seconds = []
        nft = SlowNft(clock, 0.25)
        writer = SetWriter(lambda: nft, on_latency=seconds.append)
        await writer.write([{"a": 1}])
        clock.now += 5.0  # time between transactions is no part of either
        nft.seconds = 0.5
        await writer.write([{"b": 2}])
        assert seconds == [0.25, 0.5] and writer.stats.last_seconds == 0.5

    asyncio.run(main())


class RecordingElements:
    """Stands in for the netlink element socket; refuses any change that deletes `bad`."""

    def __init__(self, log, bad=None):
        self.log = log
        self.bad = bad
        self.refreshes = []

    def write(self, changes, refresh):
        self.log.append(("elements", [c.writes + c.deletes for c in changes]))
        self.refreshes.append(refresh)
        if any(self.bad in c.deletes for c in changes):
            raise OSError(2, "no such element")


def test_element_and_command_requests_keep_their_order_in_runs():
    async def main():
        log = []
        nft = RecordingNft()
        nft.run = lambda commands: log.append(("nft", list(commands))) or []
        writer = SetWriter(lambda: nft, elements_factory=lambda: RecordingElements(log))
        done = []
        writer.submit_elements("t", ["a"], [], done.append)
        writer.submit_elements("t", ["b"], [], done.append)
        writer.submit([], done.append)  # a barrier joins the run it falls in
        writer.submit([{"c": 1}], done.append)
        writer.submit_elements("t", ["d"], [], done.append)
        await asyncio.sleep(0)
        assert log == [("elements", [("a",), ("b",)]), ("nft", [{"c": 1}]), ("elements", [("d",)])]
        assert done == [None] * 5 and writer.stats.transactions == 3

    asyncio.run(main())


def test_a_refused_element_batch_is_retried_request_by_request():
    async def main():
        log = []
        writer = SetWriter(RecordingNft, elements_factory=lambda: RecordingElements(log, bad="x"))
        done = []
        writer.submit_elements("t", ["a"], [], done.append)
        writer.submit_elements("t", [], ["x"], done.append)
        writer.submit_elements("t", ["b"], [], done.append)
        await asyncio.sleep(0)
        assert [entry[1] for entry in log] == [[("a",), ("x",), ("b",)], [("a",)], [("x",)], [("b",)]]
        assert done[0] is None and done[2] is None and isinstance(done[1], OSError)
        assert writer.stats.failures == 1

    asyncio.run(main())


def test_an_element_run_is_acknowledged_before_the_commands_queued_after_it_run():
    async def main():
        log = []
        nft = RecordingNft()
        nft.run = lambda commands: log.append("nft") or []
        writer = SetWriter(lambda: nft, elements_factory=lambda: RecordingElements(log))
        writer.submit_elements("t", ["a"], [], lambda error: log.append(("done a", error)))
        writer.submit([{"c": 1}], lambda error: log.append(("done c", error)))
        await asyncio.sleep(0)
        assert log == [("elements", [("a",)]), ("done a", None), "nft", ("done c", None)]

    asyncio.run(main())


def test_an_element_request_queued_after_the_oldest_waited_max_wait_flushes_at_once():
    async def main():
        log = []
        now = [10.0]
        writer = SetWriter(
            RecordingNft,
            elements_factory=lambda: RecordingElements(log),
            max_wait=0.0001,
            clock=lambda: now[0],
        )
        done = []
        writer.submit_elements("t", ["a"], [], done.append)
        now[0] += 0.00005
        writer.submit_elements("t", ["b"], [], done.append)
        assert done == [] and log == []  # the oldest has waited less than max_wait: still batching
        now[0] += 0.00006
        writer.submit_elements("t", ["c"], [], done.append)
        # written before submit_elements returned, the new request with the ones that waited
        assert log == [("elements", [("a",), ("b",), ("c",)])] and done == [None] * 3
        writer.submit_elements("t", ["d"], [], done.append)  # the oldest is now "d": a new batch
        now[0] += 0.00009
        writer.submit_elements("t", ["e"], [], done.append)
        assert len(log) == 1
        await asyncio.sleep(0)  # the end of the loop turn writes the rest, as without max_wait
        assert log[1:] == [("elements", [("d",), ("e",)])] and done == [None] * 5
        assert writer.stats.transactions == 2

    asyncio.run(main())


def test_without_max_wait_requests_wait_for_the_end_of_the_turn_however_long_they_waited():
    async def main():
        log = []
        now = [10.0]
        writer = SetWriter(
            RecordingNft, elements_factory=lambda: RecordingElements(log), clock=lambda: now[0]
        )
        done = []
        writer.submit_elements("t", ["a"], [], done.append)
        now[0] += 60.0
        writer.submit_elements("t", ["b"], [], done.append)
        assert done == [] and log == []
        await asyncio.sleep(0)
        assert log == [("elements", [("a",), ("b",)])] and done == [None, None]

    asyncio.run(main())


def test_the_refresh_strategy_the_agent_chose_reaches_every_element_write():
    async def main():
        log = []
        elements = RecordingElements(log)
        writer = SetWriter(RecordingNft, elements_factory=lambda: elements)
        writer.submit_elements("t", ["a"], [], lambda _: None)
        await asyncio.sleep(0)
        writer.refresh = Refresh.REPLACE
        writer.submit_elements("t", ["b"], [], lambda _: None)
        await asyncio.sleep(0)
        assert elements.refreshes == [Refresh.UPDATE, Refresh.REPLACE]

    asyncio.run(main())
