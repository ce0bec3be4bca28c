"""The image scripts/image builds, unpacked once per run: $FQDN_POLICY_IMAGE names an archive
scripts/test-cluster built (timed there); without it the fixture builds one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Image:
    rootfs: Path
    config: dict[str, Any]  # the OCI image configuration's `config` (Entrypoint, Env, ...)
    tag: str

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env", []))


def _blob(layout: Path, digest: str) -> dict[str, Any]:
    algorithm, value = digest.split(":")
    return json.loads((layout / "blobs" / algorithm / value).read_text())


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> Image:
    if os.geteuid() != 0 or not shutil.which("umoci") or not shutil.which("runc"):
        pytest.skip("needs root, umoci and runc (scripts/test-cluster installs them)")
    work = tmp_path_factory.mktemp("image")
    archive = os.environ.get("FQDN_POLICY_IMAGE")
    if not archive:
        archive = str(work / "fqdn-policy.oci.tar")
        subprocess.run([ROOT / "scripts" / "image", "--output", archive], check=True)
    layout = work / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-C", layout, "-xf", archive], check=True)
    index = json.loads((layout / "index.json").read_text())
    (manifest_ref,) = index["manifests"]
    tag = manifest_ref["annotations"]["org.opencontainers.image.ref.name"]
    config = _blob(layout, _blob(layout, manifest_ref["digest"])["config"]["digest"])
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", work / "bundle"], check=True)
    return Image(work / "bundle" / "rootfs", config["config"], tag)
