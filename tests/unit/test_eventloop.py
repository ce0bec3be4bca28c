"""--event-loop: the agent runs on the loop it was asked for."""

import asyncio

import uvloop

from fqdn_policy.agent.eventloop import EventLoop, run


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_is_used_when_chosen():
    assert issubclass(run(_loop_type(), EventLoop.UVLOOP), uvloop.Loop)


def test_the_standard_loop_is_used_when_chosen():
    loop_type = run(_loop_type(), EventLoop.ASYNCIO)
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_the_cli_defaults_to_the_standard_loop():
    from fqdn_policy.cli.main import build_parser

    args = build_parser().parse_args(["run", "--policy", "p.yaml", "--upstream", "192.0.2.1:53"])
    assert args.event_loop == "asyncio"


def test_the_young_generation_threshold_is_a_positive_flag():
    import pytest

    from fqdn_policy.agent.config import GC_THRESHOLD
    from fqdn_policy.cli.main import build_parser

    base = ["run", "--policy", "p.yaml", "--upstream", "192.0.2.1:53"]
    assert build_parser().parse_args(base).gc_young == GC_THRESHOLD
    assert build_parser().parse_args([*base, "--gc-young", "700"]).gc_young == 700
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--gc-young", "0"])
