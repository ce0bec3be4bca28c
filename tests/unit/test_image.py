"""The two ways to build the image put the same things in it: deploy/Containerfile (for users with a
registry and an engine) and scripts/image (mmdebstrap + umoci, no engine). Without an engine the
Containerfile cannot be built here, so what each path declares is compared; tests/cluster checks the
image scripts/image really builds against the same declarations."""

import json
import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = (ROOT / "deploy" / "Containerfile").read_text()
SCRIPT = (ROOT / "scripts" / "image").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def script_constant(name: str) -> str:
    (value,) = re.findall(rf"^readonly {name}=(\S+)$", SCRIPT, re.M)
    return value


def debian_packages() -> list[str]:
    lines = (ROOT / "deploy" / "image" / "packages").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def project_packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}


def containerfile_entrypoint() -> list[str]:
    (args,) = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    return json.loads(args)


def containerfile_env() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions() if word == "ENV")


def test_the_base_is_debian_of_the_scripts_suite_and_a_build_argument():
    steps = instructions()
    assert steps[0] == ("ARG", f"BASE=debian:{script_constant('SUITE')}-slim")
    assert steps[1] == ("FROM", "${BASE}")


def test_both_install_the_one_package_list():
    steps = instructions()
    assert ("COPY", "deploy/image/packages /tmp/packages") in steps
    (install,) = [rest for word, rest in steps if word == "RUN" and "apt-get install" in rest]
    assert "grep -v '^\\s*#' /tmp/packages | xargs apt-get install" in install
    assert "deploy/image/packages" in SCRIPT and '--include="$packages"' in SCRIPT
    for needed in ("python3", "python3-venv", "nftables", "libnftables1", "iproute2", "conntrack"):
        assert needed in debian_packages()


def test_the_containerfile_copies_every_package_of_the_project():
    copied = {rest.split()[0] for word, rest in instructions() if word == "COPY"}
    assert project_packages() <= copied, "the image would miss a package the wheel of scripts/image has"
    assert {"pyproject.toml"} <= {w for word, rest in instructions() if word == "COPY" for w in rest.split()}


def test_same_venv_entrypoint_and_path():
    venv = script_constant("VENV")
    assert containerfile_entrypoint() == [script_constant("ENTRYPOINT")] == [f"{venv}/bin/fqdn-policy"]
    assert containerfile_env() == {"PATH": script_constant("IMAGE_PATH")}
    assert containerfile_env()["PATH"].startswith(f"{venv}/bin:")
    (install,) = [rest for word, rest in instructions() if word == "RUN" and "venv" in rest]
    assert f"python3 -m venv --without-pip {venv}" in install
    assert 'python3 -m venv --without-pip "$VENV"' in SCRIPT and f"--python {venv}/bin/python" in install


def test_the_daemonset_and_compose_run_what_the_entrypoint_takes():
    import yaml

    ds = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "daemonset.yaml").read_text())
        if d["kind"] == "DaemonSet"
    )
    pod = ds["spec"]["template"]["spec"]
    for container in pod["containers"]:
        assert "command" not in container  # the image's entrypoint, with the container's args
    (init,) = pod["initContainers"]
    assert shlex.split(" ".join(init["command"][:2])) == ["/bin/sh", "-c"]
