"""SetWriter's group commit, with a recording libnftables stand-in: no kernel needed."""

import asyncio

from enforcer.writer import SetWriter


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


def test_each_transaction_reports_its_duration():
    async def main():
        seconds = []
        writer = SetWriter(RecordingNft, on_latency=seconds.append)
        await writer.write([{"a": 1}])
        assert len(seconds) == 1 and seconds[0] >= 0.0

    asyncio.run(main())
