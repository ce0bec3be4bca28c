"""SetWriter reports each transaction's duration for the nft-write histogram; barriers are not timed."""

import asyncio

import pytest

from fqdn_policy.enforcer import writer as writer_module
from fqdn_policy.enforcer.nft import NftError
from fqdn_policy.enforcer.writer import SetWriter


class SteppedClock:
    """Stands in for the writer's `time` module; only the kernel stand-in moves it."""

    def __init__(self):
        self.now = 50.0

    def perf_counter(self):
        return self.now


class FakeNft:
    def __init__(self, clock, seconds=0.125, fail=False):
        self.clock = clock
        self.seconds = seconds
        self.fail = fail
        self.runs = []

    def run(self, commands):
        self.clock.now += self.seconds  # each kernel call, empty or not, takes this long
        if commands:
            self.runs.append(commands)
            if self.fail:
                raise NftError("no such table")
        return []


@pytest.fixture
def clock(monkeypatch):
    stepped = SteppedClock()
    monkeypatch.setattr(writer_module, "time", stepped)
    return stepped


def test_transactions_are_timed_and_barriers_are_not(clock):
    observed = []
    nft = FakeNft(clock)
    writer = SetWriter(lambda: nft, on_latency=observed.append)

    async def main():
        await writer.write([{"add": {"element": 1}}])
        await writer.write([])  # a barrier
        await writer.call(lambda _nft: None)  # a barrier too

    asyncio.run(main())
    assert len(nft.runs) == 1
    assert observed == [0.125]


def test_failed_transactions_are_timed_too(clock):
    observed = []
    writer = SetWriter(lambda: FakeNft(clock, seconds=0.375, fail=True), on_latency=observed.append)

    async def main():
        try:
            await writer.write([{"add": {"element": 1}}])
        except NftError:
            return True
        return False

    assert asyncio.run(main()) is True
    assert observed == [0.375]  # one request alone: its failed call is the whole transaction
