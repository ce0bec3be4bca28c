"""Running a container of the built image with runc, as the kubelet would run the DaemonSet's: the
image's entrypoint and environment, the container's args (with the kubelet's $(VAR) expansion), its
securityContext (capabilities, read-only root, no privilege escalation), its volumes, and the node's
network namespace joined by its path (hostNetwork).

Podman and crun cannot start containers on this kind of machine (setting rlimits is not permitted);
runc can, with a spec that sets no rlimits, so the spec is written here rather than by `runc spec`.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MASKED = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"]


def expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of `$(NAME)` in command and args; an unknown name stays as written."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def capabilities(security: dict[str, Any]) -> list[str]:
    caps = security.get("capabilities", {})
    assert caps.get("drop") == ["ALL"], "the spec below grants only what is added"
    return [f"CAP_{name}" for name in caps.get("add", [])]


@dataclass
class Container:
    """One container of a pod spec, ready to run from `rootfs`."""

    name: str
    rootfs: Path
    argv: list[str]
    env: dict[str, str]
    security: dict[str, Any]
    netns: Path
    mounts: list[tuple[Path, str]] = field(default_factory=list)  # (host path, container path), read-only

    def spec(self) -> dict[str, Any]:
        caps = capabilities(self.security)
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "ro"],
            },
        ]
        for source, destination in self.mounts:
            mounts.append(
                {
                    "destination": destination,
                    "type": "bind",
                    "source": str(source),
                    "options": ["rbind", "ro"],
                }
            )
        user = self.security.get("runAsUser", 0)
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": user, "gid": user},
                "args": self.argv,
                "env": [f"{k}={v}" for k, v in self.env.items()],
                "cwd": "/",
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": self.security.get("allowPrivilegeEscalation") is False,
            },
            "root": {"path": str(self.rootfs), "readonly": bool(self.security.get("readOnlyRootFilesystem"))},
            "hostname": self.name,
            "mounts": mounts,
            "linux": {
                "namespaces": [
                    {"type": "pid"},
                    {"type": "ipc"},
                    {"type": "uts"},
                    {"type": "mount"},
                    {"type": "network", "path": str(self.netns)},  # hostNetwork: the node's
                ],
                "maskedPaths": DEFAULT_MASKED,
            },
        }

    def bundle(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.spec(), indent=1))
        return directory


def run(container_id: str, bundle: Path, log: Path, wait: bool = False) -> subprocess.Popen[bytes]:
    """`runc run` in the foreground of its own process: signals to it go to the container."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["runc", "run", "--bundle", str(bundle), container_id], stdout=out, stderr=subprocess.STDOUT
        )
    if wait:
        process.wait(60)
    return process


def delete(container_id: str) -> None:
    subprocess.run(["runc", "delete", "--force", container_id], capture_output=True, check=False)
