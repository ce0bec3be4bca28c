"""`fqdn-policy teardown`: delete this project's nftables tables (lifts all enforcement)."""

from __future__ import annotations

import sys
from typing import Any

from fqdn_policy.cli.exitcodes import EXIT_OK, EXIT_RUNTIME
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.dnsredirect import DEFAULT_DNS_TABLE
from fqdn_policy.enforcer.guard import guard_table
from fqdn_policy.enforcer.nft import Nft, NftError


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("teardown", help="delete this project's nftables table (lifts all enforcement)")
    cmd.add_argument("--table", default=ruleset.DEFAULT_TABLE)
    cmd.add_argument("--dns-table", default=DEFAULT_DNS_TABLE)
    cmd.set_defaults(handler=lambda args: run_teardown([args.table, guard_table(args.table), args.dns_table]))


def run_teardown(tables: list[str]) -> int:
    try:
        nft = Nft()
        # One transaction: the guard table left alone for a moment would close every enforced pod.
        present = [t for t in tables if nft.table_exists(t)]
        nft.run([c for t in present for c in ruleset.delete_table(t)])
        for name in tables:
            verb = "deleted table" if name in present else "no table"
            print(f"{verb} {ruleset.FAMILY} {name}")
    except NftError as error:
        print(f"teardown failed: {error}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK
