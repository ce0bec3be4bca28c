"""HOST:PORT parsing shared by the lab's command lines, with v6 in brackets."""

from __future__ import annotations

import argparse


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """'198.51.100.53:53', '[2001:db8:100::53]:53'; with ``default_port``, also a bare
    address such as '198.51.100.53' or '2001:db8:100::53'."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        if not rest and default_port is not None:
            return host, default_port
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isdigit():
            return host, int(port)
    elif default_port is not None:
        return text, default_port
    # argparse turns this into a clean usage error rather than a traceback.
    raise argparse.ArgumentTypeError(f"expected HOST:PORT or [V6]:PORT, got {text!r}")


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
