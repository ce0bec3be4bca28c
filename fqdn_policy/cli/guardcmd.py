"""`fqdn-policy dns-guard`: remove the DNS redirect when no agent listens where it points."""

from __future__ import annotations

import argparse
from typing import Any

from fqdn_policy import logs
from fqdn_policy.agent.dnsguard import DnsGuard
from fqdn_policy.cli.exitcodes import EXIT_OK
from fqdn_policy.enforcer.dnsredirect import DEFAULT_DNS_TABLE


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "dns-guard",
        help="remove the DNS redirect when no agent listens where it points (runs beside the agent)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cmd.add_argument("--dns-table", default=DEFAULT_DNS_TABLE, help="the redirect table to watch")
    cmd.add_argument("--interval", type=float, default=1.0, help="seconds between looks")
    cmd.set_defaults(handler=run_guard)


def run_guard(args: argparse.Namespace) -> int:
    logs.configure()
    DnsGuard(args.dns_table, args.interval).run()
    return EXIT_OK
