"""The DNS-rebinding guard: answered addresses that are returned to the pod but never allowed.

A name an attacker controls can answer with 127.0.0.1, a link-local metadata address or the node's own
address; allowing those would open the node itself to a selected pod. Loopback and link-local are
always protected; the node's addresses and extra ranges come from configuration.
"""

from __future__ import annotations

import ipaddress
import socket
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
        # inet_pton and int.from_bytes are C calls; ipaddress.ip_address costs ten times more here.
        if version == 4:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
            ranges = self._v4
        else:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
            ranges = self._v6
        for net, mask in ranges:  # noqa: SIM110 - a generator costs more on this hot path
            if value & mask == net:
                return True
        return False
