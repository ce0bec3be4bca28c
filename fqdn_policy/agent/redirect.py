"""The DNS redirect's lifecycle in a running agent: install at start, keep while running, remove at stop.

The nftables side (table, ownership by rule handles) is enforcer.dnsredirect; the conntrack side is
fqdn_policy.enforcer.conntrack. This module decides when each happens and logs it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets

from fqdn_policy.enforcer import conntrack, dnsredirect
from fqdn_policy.enforcer.dnsredirect import Redirect
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.enforcer.ruleset import FAMILY
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.logs import get


def plan(services: list[tuple[str, int]], listen: list[tuple[str, int]]) -> list[Redirect]:
    """Each service address goes to the first listen address of its family.

    Raises ValueError (a usage error) when there is none, or when it is loopback (a DNAT in prerouting
    to 127.0.0.0/8 or ::1 is dropped as a martian, unless route_localnet, which opens more than this)
    or a wildcard (not an address a packet can be sent to).
    """
    redirects = []
    for host, port in services:
        v6 = ":" in host
        targets = [(h, p) for h, p in listen if (":" in h) == v6]
        if not targets:
            family = "IPv6" if v6 else "IPv4"
            raise ValueError(f"{host}: no {family} --listen address to redirect it to")
        target = targets[0]
        address = ipaddress.ip_address(target[0])
        if address.is_loopback or address.is_unspecified:
            kind = "loopback" if address.is_loopback else "a wildcard"
            raise ValueError(
                f"{host}: the redirect target {target[0]} is {kind}, which pods cannot "
                "be redirected to; listen on a node address (e.g. 169.254.20.53, see docs/kubernetes.md)"
            )
        redirects.append(Redirect(service=(host, port), target=target))
    return redirects


def _hostport(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class DnsRedirector:
    def __init__(self, writer: SetWriter, table: str, redirects: list[Redirect]) -> None:
        self.writer = writer
        self.table = table
        self.redirects = redirects
        # Unique per process: in a container every agent may be pid 1.
        self.token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.handles: list[int] = []
        self.log = get("fqdn_policy.redirect")

    @property
    def enabled(self) -> bool:
        return bool(self.redirects)

    async def install(self, reason: str = "start") -> None:
        if not self.enabled:
            return
        commands = dnsredirect.install_commands(self.table, self.redirects, self.token)
        self.handles = await self.writer.call(lambda nft: nft.run_returning_handles(commands))
        self.log.info(
            "dns.redirect_installed",
            reason=reason,
            table=f"{FAMILY} {self.table}",
            owner=self.token,
            redirects=[f"{_hostport(r.service)} -> {_hostport(r.target)}" for r in self.redirects],
        )
        await self._flush_conntrack(redirected=True)

    def _present(self, nft: Nft) -> bool:
        return dnsredirect.CHAIN in nft.chains(self.table)

    async def keep(self) -> None:
        """Watchdog step: rebuild a deleted table. A table another agent took over is left to it."""
        if self.enabled and not await self.writer.call(self._present):
            await self.install(reason="table or chain missing")

    async def remove(self) -> None:
        """Delete the table if this agent still owns it; a newer agent's redirect stays."""
        if not self.enabled:
            return
        commands = dnsredirect.remove_commands(self.table, self.handles)
        try:
            await self.writer.call(lambda nft: nft.run(commands))
        except NftError as error:
            # Our rules are gone: a newer agent replaced them (it owns the redirect now), or someone
            # deleted the table. Either way there is nothing of ours left to remove.
            self.log.info(
                "dns.redirect_kept",
                reason="this agent's rules were replaced",
                owner=self.token,
                kernel_said=str(error).splitlines()[0] if str(error) else "",
            )
            return
        self.log.info("dns.redirect_removed", table=f"{FAMILY} {self.table}", owner=self.token)
        await self._flush_conntrack(redirected=False)

    async def _flush_conntrack(self, redirected: bool) -> None:
        for redirect in self.redirects:
            deleted = await asyncio.to_thread(
                conntrack.flush_misrouted, redirect.service, redirect.target, redirected
            )
            if deleted is None:
                self.log.warning(
                    "dns.conntrack_unavailable",
                    tool=conntrack.TOOL,
                    consequence="UDP flows opened before the change keep their old path until idle",
                )
                return
            if deleted:
                self.log.info(
                    "dns.conntrack_flushed",
                    service=_hostport(redirect.service),
                    entries=deleted,
                    redirected=redirected,
                )
