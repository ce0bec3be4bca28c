"""`fqdn-policy crd`: the FQDNNetworkPolicy CustomResourceDefinition generated from the one schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fqdn_policy.cli.exitcodes import EXIT_OK
from fqdn_policy.policy.spec import crd


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "crd", help="print the FQDNNetworkPolicy CustomResourceDefinition generated from the schema"
    )
    cmd.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    cmd.add_argument(
        "--fields", action="store_true", help="print the spec's fields and checks as a Markdown table instead"
    )
    cmd.set_defaults(handler=lambda args: run_crd(args.output, args.fields))


def run_crd(output: Path | None, fields: bool) -> int:
    text = crd.field_table() if fields else crd.render()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    return EXIT_OK
