"""Conntrack entries that would keep UDP DNS flows on the wrong side of a redirect change.

NAT is decided on a connection's first packet and then remembered in its conntrack entry. A pod whose
resolver sends every query from one UDP socket (dnsmasq, nscd, some language runtimes) keeps one entry
alive as long as it keeps asking, so:
- when the redirect is installed, its entry still leads to the cluster DNS, bypassing the proxy (and so
  the policy: its answers would allow nothing, and it would never learn why);
- when the redirect is removed, its entry still leads to the proxy address, where nothing listens.
Deleting exactly those entries makes the flow's next packet take the NAT path the ruleset now says.

Only UDP: a TCP connection carries a few queries and closes; deleting its entry mid-stream would reset
it instead of redirecting it. Entries are listed with the `conntrack` tool (conntrack-tools, which
kube-proxy needs on every node anyway) and deleted one by one by their exact original tuple, so an
entry created meanwhile by the new path is never touched.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass

TOOL = "conntrack"


@dataclass(frozen=True, slots=True)
class UdpEntry:
    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_sport: int


def parse_entries(text: str) -> list[UdpEntry]:
    """`conntrack -L -p udp` lines: the first src/dst/sport/dport are the original direction, the
    second the reply direction (after NAT: the reply comes from where the packet was sent)."""
    entries = []
    for line in text.splitlines():
        fields: dict[str, list[str]] = {}
        for token in line.split():
            key, eq, value = token.partition("=")
            if eq:
                fields.setdefault(key, []).append(value)
        try:
            entries.append(
                UdpEntry(
                    src=_canonical(fields["src"][0]),
                    dst=_canonical(fields["dst"][0]),
                    sport=int(fields["sport"][0]),
                    dport=int(fields["dport"][0]),
                    reply_src=_canonical(fields["src"][1]),
                    reply_sport=int(fields["sport"][1]),
                )
            )
        except (KeyError, IndexError, ValueError):
            continue  # a summary or a line of another shape
    return entries


def _canonical(address: str) -> str:
    return ipaddress.ip_address(address).compressed


def misrouted(entries: list[UdpEntry], target: tuple[str, int], redirected: bool) -> list[UdpEntry]:
    """Entries whose replies do not come from where new flows now go: the proxy `target` when
    `redirected`, anywhere but the proxy otherwise."""
    proxy = (_canonical(target[0]), target[1])
    return [e for e in entries if ((e.reply_src, e.reply_sport) == proxy) != redirected]


def _family(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


def flush_misrouted(service: tuple[str, int], target: tuple[str, int], redirected: bool) -> int | None:
    """Delete the UDP entries to `service` that `misrouted` names; how many, or None without the tool."""
    if shutil.which(TOOL) is None:
        return None
    host, port = service
    family = _family(host)
    listed = subprocess.run(
        [TOOL, "-L", "-f", family, "-p", "udp", "--orig-dst", host, "--orig-port-dst", str(port)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    deleted = 0
    for entry in misrouted(parse_entries(listed.stdout), target, redirected):
        result = subprocess.run(
            [TOOL, "-D", "-f", family, "-p", "udp", "-s", entry.src, "-d", entry.dst,
             "--sport", str(entry.sport), "--dport", str(entry.dport)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )  # fmt: skip
        deleted += result.returncode == 0  # an entry that expired meanwhile is gone too, just not counted
    return deleted
