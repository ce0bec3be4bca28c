"""`fqdn-policy check FILE`: validate a policy file (exit 0 valid, 1 invalid)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fqdn_policy.cli.exitcodes import EXIT_INVALID, EXIT_OK
from fqdn_policy.sources.fileloader import PolicyFileError, load_file, pattern_warnings


def add_parser(sub: Any) -> None:
    check = sub.add_parser("check", help="validate a policy file (exit 0 valid, 1 invalid)")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=lambda args: run_check(args.file))


def run_check(path: Path) -> int:
    try:
        policy_set = load_file(path)
    except PolicyFileError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID
    # Warnings do not make the file invalid: these patterns can be meant (docs/semantics.md).
    warnings = pattern_warnings(policy_set, str(path), path.read_text(encoding="utf-8"))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    noted = f", {len(warnings)} warnings" if warnings else ""
    print(f"{path}: OK: {len(policy_set.policies)} policies, {len(policy_set.pods)} pods{noted}")
    return EXIT_OK
