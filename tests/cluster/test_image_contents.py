"""The image scripts/image built holds what deploy/Containerfile declares: the same entrypoint and PATH,
the Debian packages of deploy/image/packages, every package of the project, and the programs the
DaemonSet and docker-compose.yml run in it."""

import re
import subprocess

import pytest
import yaml

from tests.cluster.conftest import ROOT
from tests.unit.test_image import (
    containerfile_entrypoint,
    containerfile_env,
    debian_packages,
    project_packages,
)

pytestmark = pytest.mark.cluster


def installed_debian_packages(rootfs):
    status = (rootfs / "var/lib/dpkg/status").read_text()
    return {
        m.group(1)
        for m in re.finditer(r"^Package: (\S+)\n(?:.+\n)*?Status: install ok installed$", status, re.M)
    }


def in_image(image, *argv):
    return subprocess.run(
        ["chroot", image.rootfs, *argv], capture_output=True, text=True, env=image.env, timeout=60
    )


def test_entrypoint_and_path_are_the_containerfiles(image):
    assert image.config["Entrypoint"] == containerfile_entrypoint()
    assert image.env == containerfile_env()
    assert image.config["Labels"]["org.opencontainers.image.version"] == "0.1.0"


def test_the_debian_packages_are_installed(image):
    assert set(debian_packages()) <= installed_debian_packages(image.rootfs)


def test_every_package_of_the_project_is_installed_and_runs(image):
    site = next((image.rootfs / "opt/fqdn-policy/lib").glob("python3*/site-packages"))
    assert project_packages() <= {p.name for p in site.iterdir() if p.is_dir()}
    result = in_image(image, *image.config["Entrypoint"], "--version")
    assert (result.returncode, result.stdout.strip()) == (0, "fqdn-policy 0.1.0"), result.stderr
    assert not (image.rootfs / "opt/fqdn-policy/bin/pip").exists()  # no pip in the image's venv


def test_programs_the_daemonset_and_compose_run_are_on_the_images_path(image):
    """docker-compose.yml cannot run here (no engine); what it runs in the image can be checked."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    proxy, client = compose["services"]["proxy"], compose["services"]["client"]
    programs = {"sh", "nft", "fqdn-policy", "ip", "sleep"}
    programs.add(proxy["healthcheck"]["test"][1])  # python
    assert proxy["entrypoint"][0] == client["entrypoint"][0] == "/bin/sh"
    for program in sorted(programs):
        result = in_image(image, "/bin/sh", "-c", f"command -v {program}")
        assert result.returncode == 0, f"{program} is not on the image's PATH"
    health = in_image(image, *proxy["healthcheck"]["test"][1:3], "import urllib.request")
    assert health.returncode == 0, health.stderr
