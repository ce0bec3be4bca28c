"""Addresses of the lab topology, in one place so tests and the lab agree on them.

Only 10.244.0.0/16 (pods) and documentation ranges (RFC 5737 / RFC 3849) are used, so
nothing the lab sends could ever be mistaken for real traffic even if it escaped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

POD_NET_V4 = ipaddress.IPv4Network("10.244.1.0/24")
POD_NET_V6 = ipaddress.IPv6Network("2001:db8:244::/64")
# inet routes the whole cluster range back, so pods on other node subnets would work too.
CLUSTER_NET_V4 = ipaddress.IPv4Network("10.244.0.0/16")

NODE_POD_GW_V4 = "10.244.1.1"
NODE_POD_GW_V6 = "2001:db8:244::1"

TRANSIT_PREFIX_V4 = 24
TRANSIT_PREFIX_V6 = 64
NODE_UPLINK_V4 = "203.0.113.1"
NODE_UPLINK_V6 = "2001:db8:203::1"
INET_UPLINK_V4 = "203.0.113.2"
INET_UPLINK_V6 = "2001:db8:203::2"

INTERNET_NET_V4 = ipaddress.IPv4Network("198.51.100.0/24")
INTERNET_NET_V6 = ipaddress.IPv6Network("2001:db8:100::/64")

DNS_V4 = "198.51.100.53"
DNS_V6 = "2001:db8:100::53"

DEFAULT_INET_HOSTS: tuple[str, ...] = (
    "198.51.100.10",
    "198.51.100.20",
    "198.51.100.30",
    DNS_V4,
    "2001:db8:100::10",
    "2001:db8:100::20",
    "2001:db8:100::30",
    DNS_V6,
)

# Anything a test puts on the fake internet must stay inside documentation space.
_DOC_NETS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    INTERNET_NET_V4,
    ipaddress.IPv6Network("2001:db8::/32"),
)
# ...but not the parts of it that already mean something else in the lab.
_RESERVED_NETS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    POD_NET_V6,
    ipaddress.IPv6Network("2001:db8:203::/64"),
)


@dataclass(frozen=True)
class PodSpec:
    """One pod namespace: its short name and its addresses on the node bridge."""

    name: str
    ipv4: str
    ipv6: str

    def validate(self) -> None:
        if ipaddress.IPv4Address(self.ipv4) not in POD_NET_V4:
            raise ValueError(f"pod {self.name}: {self.ipv4} is outside {POD_NET_V4}")
        if ipaddress.IPv6Address(self.ipv6) not in POD_NET_V6:
            raise ValueError(f"pod {self.name}: {self.ipv6} is outside {POD_NET_V6}")
        if self.ipv4 == NODE_POD_GW_V4 or self.ipv6 == NODE_POD_GW_V6:
            raise ValueError(f"pod {self.name}: address collides with the node bridge")


DEFAULT_PODS: tuple[PodSpec, ...] = (
    PodSpec("pod-a", "10.244.1.10", "2001:db8:244::10"),
    PodSpec("pod-b", "10.244.1.11", "2001:db8:244::11"),
)


def validate_inet_host(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(addr)
    if not any(ip.version == net.version and ip in net for net in _DOC_NETS):
        raise ValueError(f"fake internet host {addr} is not in a documentation range")
    if any(ip.version == net.version and ip in net for net in _RESERVED_NETS):
        raise ValueError(f"fake internet host {addr} collides with a lab-internal subnet")
    return ip


def is_covered_by_internet_route(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    net = INTERNET_NET_V4 if ip.version == 4 else INTERNET_NET_V6
    return ip in net
