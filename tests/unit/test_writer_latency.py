"""SetWriter reports each transaction's duration for the nft-write histogram; barriers are not timed."""

import asyncio

from enforcer.nft import NftError
from enforcer.writer import SetWriter


class FakeNft:
    def __init__(self, fail=False):
        self.fail = fail
        self.runs = []

    def run(self, commands):
        if commands:
            self.runs.append(commands)
            if self.fail:
                raise NftError("no such table")
        return []


def test_transactions_are_timed_and_barriers_are_not():
    observed = []
    nft = FakeNft()
    writer = SetWriter(lambda: nft, on_latency=observed.append)

    async def main():
        await writer.write([{"add": {"element": 1}}])
        await writer.write([])  # a barrier
        await writer.call(lambda _nft: None)  # a barrier too

    asyncio.run(main())
    assert len(nft.runs) == 1
    assert len(observed) == 1 and observed[0] >= 0.0


def test_failed_transactions_are_timed_too():
    observed = []
    writer = SetWriter(lambda: FakeNft(fail=True), on_latency=observed.append)

    async def main():
        try:
            await writer.write([{"add": {"element": 1}}])
        except NftError:
            return True
        return False

    assert asyncio.run(main()) is True
    assert len(observed) == 1
