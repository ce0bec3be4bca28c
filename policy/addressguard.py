"""The DNS-rebinding guard: answered addresses that are returned to the pod but never allowed.

A name an attacker controls can answer with 127.0.0.1, a link-local metadata address or the node's own
address; allowing those would open the node itself to a selected pod. Loopback and link-local are
always protected; the node's addresses and extra ranges come from configuration.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

ALWAYS_PROTECTED = ("127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8", "::1/128", "fe80::/10", "::/128")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressGuard:
    def __init__(self, networks: Iterable[str] = (), node_addresses: Iterable[str] = ()) -> None:
        nets: list[Network] = [ipaddress.ip_network(n) for n in (*ALWAYS_PROTECTED, *networks)]
        nets += [ipaddress.ip_network(a) for a in node_addresses]
        self.networks = tuple(nets)
        self._v4 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 4)
        self._v6 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 6)

    def protects(self, version: int, address: str) -> bool:
        value = int(ipaddress.ip_address(address))
        ranges = self._v4 if version == 4 else self._v6
        return any(value & mask == net for net, mask in ranges)
