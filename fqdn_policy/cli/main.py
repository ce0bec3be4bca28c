"""The `fqdn-policy` command."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

from fqdn_policy.cli import checkcmd, crdcmd, explaincmd, guardcmd, runcmd, statuscmd, teardowncmd
from fqdn_policy.cli.exitcodes import EXIT_INVALID, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE", "build_parser", "main"]

SUBCOMMANDS = (runcmd, checkcmd, guardcmd, crdcmd, statuscmd, explaincmd, teardowncmd)


def _version() -> str:
    try:
        return importlib.metadata.version("fqdn-policy")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    # `@FILE` reads more arguments from FILE, one per line: how the DaemonSet takes its ConfigMap.
    parser = argparse.ArgumentParser(prog="fqdn-policy", description=__doc__, fromfile_prefix_chars="@")
    parser.add_argument("--version", action="version", version=f"fqdn-policy {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
