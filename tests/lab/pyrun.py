"""Running the lab's own Python tools (probe, fakeinternet) inside lab namespaces.

`ip netns exec` keeps the filesystem, so the venv interpreter and this checkout work
unchanged in every namespace; only the import path has to be pinned to the repo."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.lab.netlab import Lab

REPO_ROOT = Path(__file__).resolve().parents[2]


def module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def module_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # Tracebacks from a child belong in its log right away, not after a buffer flush.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def probe(lab: Lab, ns_name: str, *args: str | int | float, timeout: float = 15.0) -> dict[str, Any]:
    """Run ``python -m tests.lab.probe ARGS`` in a namespace and return its JSON result."""
    argv = module_argv("tests.lab.probe", *(str(x) for x in args))
    res = lab.run(ns_name, argv, timeout=timeout, check=False, env=module_env(), cwd=REPO_ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"probe {args} in {ns_name} failed ({res.returncode}): {res.stderr.strip()}")
    result: dict[str, Any] = json.loads(res.stdout)
    return result
