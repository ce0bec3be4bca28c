"""deploy/systemd/fqdn-policy.service stays valid: systemd accepts it and the CLI accepts its command."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fqdn_policy.cli.main import build_parser

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "fqdn-policy.service"


def directives():
    out = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_restarts_always_and_not_on_configuration_errors():
    d = directives()
    assert d["Restart"] == ["always"]
    assert d["RestartPreventExitStatus"] == ["1 2"]  # fqdn_policy/cli/main.py: EXIT_INVALID, EXIT_USAGE
    assert d["KillSignal"] == ["SIGTERM"] and d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert int(d["LimitNOFILE"][0]) >= 2 * 1024 + 256  # two listeners' TCP caps and the rest


def test_the_cli_accepts_the_command_line():
    argv = shlex.split(directives()["ExecStart"][0])
    assert argv[0].endswith("/fqdn-policy")
    example = "--listen 10.244.1.1:53 --upstream 192.0.2.53"  # the unit's documented environment file
    args = build_parser().parse_args(argv[1:-1] + shlex.split(example))
    assert args.command == "run" and args.upstream == [("192.0.2.53", 53)]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_is_clean(tmp_path):
    agent = Path(sys.executable).with_name("fqdn-policy")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/fqdn-policy", str(agent)))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
