"""`fqdn-policy dns-guard`: removes the DNS redirect when nothing listens where it points.

An agent that stops removes its redirect itself; one that crashes (SIGKILL, OOM kill, a bug) cannot,
and its DNAT would send every pod's lookups to a closed port until the agent is back, which under
CrashLoopBackOff can be minutes. The guard runs beside the agent (a second container of the DaemonSet
pod) and watches the redirect table: when no UDP socket listens on any of its DNAT targets for
MISSES_BEFORE_REMOVAL checks in a row, it deletes the rules it saw, by handle, with the table, in one
transaction. A restarted agent rewrites them first if it gets there first (the kernel then refuses the
guard's transaction): the guard never removes a redirect that something serves.

It reads its targets from the table, so it needs no flags but the table's name, and knows nothing of
policy. Agents listen before they install the redirect and remove it before they close, so the guard
only ever acts on a crash.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
from pathlib import Path
from types import FrameType

from fqdn_policy.enforcer import conntrack, dnsredirect
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.logs import get

MISSES_BEFORE_REMOVAL = 2
PROC_NET = Path("/proc/net")
_UDP_UNCONNECTED = "07"  # TCP_CLOSE: how /proc/net/udp shows a bound, unconnected socket


def _proc_address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    # Each 32-bit word is printed in host byte order (little-endian on every platform this runs on).
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words).compressed


def udp_listeners(proc_text: str) -> set[tuple[str, int]]:
    """(address, port) of unconnected UDP sockets in a /proc/net/udp or udp6 listing."""
    found: set[tuple[str, int]] = set()
    for line in proc_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _UDP_UNCONNECTED:
            continue
        host, _, port = fields[1].partition(":")
        found.add((_proc_address(host), int(port, 16)))
    return found


def served(target: tuple[str, int], listeners: set[tuple[str, int]]) -> bool:
    host, port = ipaddress.ip_address(target[0]), target[1]
    wildcard = "::" if host.version == 6 else "0.0.0.0"
    return (host.compressed, port) in listeners or (wildcard, port) in listeners


def read_listeners(proc_net: Path = PROC_NET) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for name in ("udp", "udp6"):
        try:
            found |= udp_listeners((proc_net / name).read_text())
        except OSError:
            continue  # IPv6 disabled: no udp6
    return found


class DnsGuard:
    def __init__(self, table: str, interval: float, nft: Nft | None = None) -> None:
        self.table = table
        self.interval = interval
        self.nft = nft or Nft()
        self.misses = 0
        self.log = get("fqdn_policy.dnsguard")
        self._stop = threading.Event()

    def check(self) -> bool:
        """One look; True when it removed an orphaned redirect."""
        if dnsredirect.CHAIN not in self.nft.chains(self.table):
            self.misses = 0
            return False
        redirects = dnsredirect.redirects_in(self.nft.chain_rules(self.table, dnsredirect.CHAIN))
        listeners = read_listeners()
        if not redirects or any(served(r.target, listeners) for r in redirects.values()):
            self.misses = 0
            return False
        self.misses += 1
        if self.misses < MISSES_BEFORE_REMOVAL:
            return False
        self.misses = 0
        try:
            self.nft.run(dnsredirect.remove_commands(self.table, list(redirects)))
        except NftError:
            return False  # rewritten meanwhile by an agent that listens: it is served again
        self.log.warning(
            "dns.redirect_orphaned",
            action="removed: nothing listens on its targets (agent crashed?); pods ask the cluster DNS",
            targets=sorted({f"{r.target[0]}:{r.target[1]}" for r in redirects.values()}),
        )
        for redirect in set(redirects.values()):
            conntrack.flush_misrouted(redirect.service, redirect.target, redirected=False)
        return True

    def run(self) -> None:
        def stop(_signum: int, _frame: FrameType | None) -> None:
            self._stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.log.info("dns_guard.ready", table=self.table, interval=self.interval)
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as error:  # keep guarding; the next look may succeed
                self.log.error("dns_guard.check_failed", error=str(error))
