"""Python code run in a throw-away network namespace (`unshare -n`): it goes when the process ends,
however it ends, so a test's nftables tables never reach the machine's own namespace."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_unshared(
    code: str, timeout: float = 60, mounts: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `code` with this interpreter from the project root in a new network namespace; with
    `mounts` ({source: target}), also in a private mount namespace with those bind mounts."""
    argv = ["unshare", "-n", sys.executable, "-c", code]
    if mounts:
        binds = " && ".join(f"mount --bind {src} {dst}" for src, dst in mounts.items())
        argv = ["unshare", "-m", "-n", "sh", "-c", f'{binds} && exec "$0" -c "$1"', sys.executable, code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
