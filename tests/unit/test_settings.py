"""Settings: one declaration per flag gives its default, its check and its refusal (fqdn_policy.settings)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from fqdn_policy.agent.config import AgentConfig
from fqdn_policy.cli import runcmd
from fqdn_policy.cli.main import EXIT_USAGE, build_parser, main
from fqdn_policy.dnsproxy.upstream import UpstreamAddress, UpstreamConfig
from fqdn_policy.policy.state.ttl import DEFAULT_REFRESH_SLACK, TTLPolicy
from fqdn_policy.settings import (
    Setting,
    SettingError,
    add_flags,
    default_of,
    from_args,
    setting,
    settings_of,
    validate,
    whole,
    whole_at_least,
)
from fqdn_policy.sources.config import SourceConfig

ROOT = Path(__file__).resolve().parents[2]
RUN = ["run", "--policy", "p.yaml", "--upstream", "192.0.2.53"]


def run_settings() -> list[tuple[dataclasses.Field, Setting]]:
    return [*settings_of(SourceConfig), *settings_of(AgentConfig)]


def test_every_run_flag_is_declared_once():
    flags = [s.flag for _, s in run_settings()]
    assert len(flags) == len(set(flags)) > 30


def test_the_flags_defaults_are_the_configurations_defaults():
    """No second copy of a default: what argparse fills in is what the dataclasses say."""
    args = build_parser().parse_args(RUN)
    config = from_args(AgentConfig, args)
    assert config == AgentConfig(UpstreamConfig((UpstreamAddress("192.0.2.53", 53),)))
    shown = [(f, s) for f, s in run_settings() if s.shown is not None and not s.repeat]
    assert {s.flag for _, s in shown} >= {"--metrics", "--public-metrics"}
    for f, s in shown:  # a default written as flag text reads back as the declared default
        assert s.read(s.shown) == default_of(f), s.flag


def test_the_ttl_arithmetic_has_the_agents_refresh_slack_by_default():
    """TTLPolicy's own default was 0.0 while the agent's was 0.1: one default now."""
    assert TTLPolicy().refresh_slack == DEFAULT_REFRESH_SLACK
    assert from_args(AgentConfig, build_parser().parse_args(RUN)).policy.ttl == TTLPolicy()


def test_the_readme_flag_table_states_the_declared_defaults():
    table = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(
            r"\| `(--[a-z-]+)[^|]*` (?:/ `(--[a-z-]+)[^|]*` )?\| ([^|]+) \|", line.replace("\\|", "¦")
        )
        if m:
            defaults = [d.strip().strip("`") for d in m.group(3).split(" / ")]
            for flag, default in zip([m.group(1), m.group(2)], defaults, strict=False):
                if flag:
                    table[flag] = default
    declared = {s.flag: (f, s) for f, s in run_settings()}
    assert len(table) >= 25  # the rows of the table today: the regex reads them all
    for flag, text in table.items():
        f, s = declared[flag]
        value = default_of(f)
        if text in ("none", "required"):
            assert value in ((), None), flag
        elif s.switch:
            assert (text, value) == ("off", False), flag
        elif s.repeat:
            assert value == tuple(s.read(t) for t in text.split()), flag
        else:
            assert s.read(text) == value, flag


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--attempts", "0"], "--attempts"),  # was silently clamped to 1
        (["--max-in-flight", "0"], "--max-in-flight"),
        (["--upstream-timeout", "0"], "--upstream-timeout"),
        (["--max-addresses-per-name", "0"], "--max-addresses-per-name"),
        (["--tcp-max-connections", "-1"], "--tcp-max-connections"),
        (["--client-rate", "-5"], "--client-rate"),
        (["--refresh-slack", "nan"], "--refresh-slack"),
        (["--mode", "warn"], "--mode"),
        (["--element-refresh", "sometimes"], "--element-refresh"),
        (["--listen", "localhost:53"], "--listen"),
        (["--sni-queue", "70000"], "--sni-queue"),
    ],
)
def test_a_refused_value_is_a_usage_error_naming_its_flag(flags, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*RUN, *flags])
    assert exit_info.value.code == EXIT_USAGE
    assert f"argument {named}: {flags[1]!r}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--min-ttl", "10", "--max-ttl", "5"], "--max-ttl"),
        (["--dns-service", "10.96.0.10"], "--dns-service"),  # the default listen is loopback
        (["--sni-queue", "4053"], "--sni-queue"),  # the SYN copies' NFLOG group is the drop log's
    ],
)
def test_a_refusal_across_flags_is_a_usage_error_naming_a_flag_before_anything_starts(
    flags, named, capsys, monkeypatch
):
    monkeypatch.setattr(runcmd.logs, "configure", lambda: pytest.fail("started before refusing"))
    assert main([*RUN, *flags]) == EXIT_USAGE
    assert f"argument {named}: " in capsys.readouterr().err


def test_without_an_upstream_the_run_is_refused_naming_the_flag(capsys):
    assert main(["run", "--policy", "p.yaml"]) == EXIT_USAGE
    assert "argument --upstream: at least one upstream is needed" in capsys.readouterr().err


def test_a_configuration_built_in_code_is_checked_the_same_way():
    with pytest.raises(SettingError, match=r"argument --attempts: 0 is not a whole number of at least 1"):
        UpstreamConfig((UpstreamAddress("192.0.2.53", 53),), attempts=0)
    with pytest.raises(SettingError, match="argument --max-ttl"):
        TTLPolicy(10, 5)


def test_a_value_error_while_running_is_not_reported_as_a_usage_error(monkeypatch, tmp_path):
    """No blanket `except ValueError` around the running loop: a bug is a traceback, not exit 2."""
    policy = tmp_path / "p.yaml"
    policy.write_text("")

    async def broken(self):
        raise ValueError("a bug, not a flag")

    monkeypatch.setattr(runcmd.Agent, "run_forever", broken)
    with pytest.raises(ValueError, match="a bug, not a flag"):
        main(["run", "--policy", str(policy), "--upstream", "192.0.2.53", "--metrics", "off"])


# The machinery itself, on a configuration of its own.


@dataclasses.dataclass(frozen=True)
class Inner:
    count: int = setting(2, "--count", "how many", parse=whole, check=whole_at_least(1))

    def __post_init__(self):
        validate(self)


@dataclasses.dataclass(frozen=True)
class Outer:
    names: tuple[str, ...] = setting(("a",), "--name", "repeatable", repeat=True)
    loud: bool = setting(False, "--loud", "a switch", switch=True)
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self):
        validate(self)


def parse(argv):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser, Outer)
    return from_args(Outer, parser.parse_args(argv))


def test_nested_repeated_and_switched_settings_round_trip():
    assert parse([]) == Outer()
    assert parse(["--name", "x", "--name", "y", "--loud", "--count", "5"]) == Outer(
        ("x", "y"), True, Inner(5)
    )


def test_the_machinery_refuses_by_the_check_both_ways():
    with pytest.raises(argparse.ArgumentError, match="'0' is not a whole number of at least 1"):
        parse(["--count", "0"])
    with pytest.raises(argparse.ArgumentError, match="'many' is not a whole number"):
        parse(["--count", "many"])
    with pytest.raises(SettingError, match="argument --count: 0 is not a whole number of at least 1"):
        Inner(0)
