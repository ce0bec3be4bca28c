"""The command line's own behaviour: `check` output and exit codes, and the flags' parsing."""

import argparse
from pathlib import Path

import pytest

from fqdn_policy.cli.main import EXIT_INVALID, EXIT_OK, EXIT_USAGE, main
from fqdn_policy.settings import address_or_off as metrics_address
from fqdn_policy.settings import port_number

ROOT = Path(__file__).resolve().parents[2]


def test_check_valid_file(capsys):
    assert main(["check", str(ROOT / "config" / "policy.yaml")]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"{ROOT / 'config' / 'policy.yaml'}: OK: 1 policies, 2 pods\n" and err == ""


def test_check_reports_every_problem_with_its_line(tmp_path, capsys):
    text = (ROOT / "config" / "policy.yaml").read_text()
    bad = text.replace('protocol: "TCP"', 'protocol: "TCPP"').replace(
        'pattern: "*.yourdomain.com"', 'pattern: "x.**.com"'
    )
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    assert main(["check", str(path)]) == EXIT_INVALID
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    lines_of = {n + 1 for n, line in enumerate(bad.splitlines()) if "TCPP" in line or "x.**.com" in line}
    assert len(lines) == 2
    assert {int(line.split(":")[1]) for line in lines} == lines_of  # file:LINE: ...
    assert all(line.startswith(f"{path}:") for line in lines)
    assert any("'TCPP' is not one of: TCP, UDP, ALL" in line for line in lines)
    assert any("'**' is only valid as the whole first label" in line for line in lines)


def test_check_yaml_syntax_error_names_the_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("kind: FQDNNetworkPolicy\nspec: [unclosed\n")
    assert main(["check", str(path)]) == EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"{path}:")


def test_check_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.yaml")]) == EXIT_INVALID
    assert "No such file" in capsys.readouterr().err


def test_check_without_a_file_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("off", None),
        ("127.0.0.1:9153", ("127.0.0.1", 9153)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:9153", ("::1", 9153)),
    ],
)
def test_metrics_address(text, parsed):
    assert metrics_address(text) == parsed


@pytest.mark.parametrize("text", ["127.0.0.1", "localhost:9153", "::1", "[::1]", "1.2.3.4:99999"])
def test_metrics_address_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        metrics_address(text)


@pytest.mark.parametrize("text", ["0", "65536", "http", "-1"])
def test_port_number_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        port_number(text)


def test_run_metrics_default_and_off():
    from fqdn_policy.cli.main import build_parser

    base = ["run", "--policy", "p.yaml", "--upstream", "192.0.2.53:53"]
    assert build_parser().parse_args(base).metrics == ("127.0.0.1", 9153)
    assert build_parser().parse_args([*base, "--metrics", "off"]).metrics is None


@pytest.mark.parametrize("flag", ["--max-entries-per-pod", "--max-entries"])
@pytest.mark.parametrize("text", ["0", "-5", "many", "1.5"])
def test_entry_budgets_refuse_what_is_not_a_whole_number_of_at_least_one(flag, text, capsys):
    from fqdn_policy.cli.main import build_parser

    base = ["run", "--policy", "p.yaml", "--upstream", "192.0.2.53:53"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*base, flag, text])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and repr(text) in err


@pytest.mark.parametrize("text", ["-1", "fast", "nan", "inf"])
def test_log_rate_refuses_what_is_not_a_rate(text, capsys):
    from fqdn_policy.cli.main import build_parser

    base = ["run", "--policy", "p.yaml", "--upstream", "192.0.2.53:53"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*base, "--log-rate", text])
    assert exit_info.value.code == 2 and "argument --log-rate" in capsys.readouterr().err


def test_budget_and_log_rate_defaults_and_values_reach_the_agent():
    from fqdn_policy.cli.main import build_parser

    base = ["run", "--policy", "p.yaml", "--upstream", "192.0.2.53:53"]
    args = build_parser().parse_args(base)
    assert (args.max_entries_per_pod, args.max_entries, args.log_rate) == (10_000, 100_000, 50.0)
    args = build_parser().parse_args(
        [*base, "--max-entries-per-pod", "7", "--max-entries", "9", "--log-rate", "0"]
    )
    assert (args.max_entries_per_pod, args.max_entries, args.log_rate) == (7, 9, 0.0)
