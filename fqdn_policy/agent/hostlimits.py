"""What the agent asks of its host process: open files enough for its TCP cap, its own addresses."""

from __future__ import annotations

import json
import resource
import subprocess

FILE_MARGIN = 256  # descriptors besides TCP clients: listeners, upstream sockets, netlink, logs


def raise_open_file_limit(listeners: int, max_connections: int) -> tuple[int, int] | None:
    """Every TCP client holds a descriptor: with a soft limit of 1,024 (a common default) the process
    would run out before its connection cap. Raised up to the hard limit, never lowered. Returns
    (soft limit now, needed) when the hard limit kept it below what is needed."""
    needed = listeners * max_connections + FILE_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            return target, needed
    return None


def node_addresses() -> list[str]:
    """This network namespace's own addresses, for the rebinding guard (answers never allow them)."""
    try:
        out = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=5, check=True
        )
        return [a["local"] for link in json.loads(out.stdout) for a in link.get("addr_info", [])]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return []
