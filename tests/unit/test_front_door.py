"""The README's first steps work as written on a fresh Debian root shell (no `sudo` there), the scripts
tell a non-root user what to do, and the packaging carries no deprecated metadata."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
ROOT_SCRIPTS = ["scripts/setup", "scripts/test", "scripts/demo", "bench/run"]


def try_it_commands() -> list[str]:
    section = README.split("## Try it", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_try_it_commands_run_as_root_without_sudo():
    commands = try_it_commands()
    assert commands == ["scripts/demo", "scripts/test"]
    for command in commands:
        assert (ROOT / command).stat().st_mode & 0o100, f"{command} is not executable"


@pytest.mark.parametrize("script", ROOT_SCRIPTS)
def test_a_script_run_by_another_user_says_how_to_run_it_as_root(script):
    # `nobody` cannot install packages: the script must stop before trying, and say what to do.
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(ROOT / script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "run this as root" in result.stderr and "sudo" in result.stderr and "su -c" in result.stderr


def test_the_readmes_package_list_is_the_one_setup_installs():
    setup = (ROOT / "scripts/setup").read_text()
    installed = re.search(r"--no-install-recommends \\\n\s*(.*?) >/dev/null", setup).group(1).split()
    listed = re.search(r"Debian packages `([^`]*)`", README.replace("\n", " ")).group(1).split()
    assert listed == installed
    assert "conntrack" in listed  # the e2e tests and the agent's conntrack reads need it


def test_the_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    (requirement,) = project["build-system"]["requires"]
    minimum = tuple(int(x) for x in requirement.removeprefix("setuptools>=").split("."))
    assert minimum >= (77,)  # SPDX strings in project.license need setuptools 77


def test_build_output_is_ignored():
    result = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "build/lib/x.py"], check=False, timeout=10
    )
    assert result.returncode == 0
