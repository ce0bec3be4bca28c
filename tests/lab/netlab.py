"""A throw-away network of namespaces: pods behind a node bridge, and a fake internet.

    pod-a ─┐                       node                         inet
    pod-b ─┼─ veth ── br0 10.244.1.1/24 ... uplink 203.0.113.1 ── eth0 203.0.113.2
    ...   ─┘          2001:db8:244::1/64    2001:db8:203::1        2001:db8:203::2
                                                                   hosts0: 198.51.100.x/32 ...

Every namespace name carries a per-lab prefix (``fq<6 hex>-``) so several labs coexist and
leftovers are recognisable. All configuration goes through ``ip -n`` / ``ip netns exec``,
so the root namespace's addresses, routes and firewall are never touched.
"""

from __future__ import annotations

import atexit
import ipaddress
import re
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.lab import addressing as a
from tests.lab import ownership
from tests.lab.procs import ProcessGroups, kill_namespace_pids, run_captured

NODE = "node"
INET = "inet"
BRIDGE = "br0"
NODE_UPLINK_IF = "uplink"
INET_UPLINK_IF = "eth0"
POD_IF = "eth0"
INET_HOSTS_IF = "hosts0"

# A fixed MAC stops the bridge from adopting the lowest port MAC, which would change
# whenever a port is added and leave stale neighbour entries in pods.
_BRIDGE_MAC = "02:00:0a:f4:01:01"

_COMMON_SYSCTLS = (
    # Without DAD, v6 addresses are usable the moment they are added instead of ~1-2 s later
    # (and the `nodad` flag alone does not cover link-local addresses).
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    # New namespaces may inherit rp_filter from the host (devconf_inherit_init_net); pin it
    # so only routes and the product's nftables rules decide what gets through.
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
)
_ROUTER_SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def _lab_ns_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^({re.escape(prefix)}[0-9a-f]{{6}})-")


def list_namespaces() -> list[str]:
    out = run_captured(["ip", "netns", "list"], timeout=10, check=True).stdout
    # Lines look like "name (id: 3)" or just "name".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _delete_namespace(netns: str) -> None:
    kill_namespace_pids(netns)
    run_captured(["ip", "netns", "del", netns], timeout=10, check=False)


def cleanup_stale(prefix: str = "fq") -> list[str]:
    """Delete namespaces left by crashed labs; returns the names it removed.

    Labs whose owning process is still alive are left alone."""
    pattern = _lab_ns_pattern(prefix)
    removed: list[str] = []
    orphan_ids: set[str] = set()
    for name in list_namespaces():
        m = pattern.match(name)
        if m is None or ownership.owner_alive(m.group(1)):
            continue
        _delete_namespace(name)
        removed.append(name)
        orphan_ids.add(m.group(1))
    for lab_id in orphan_ids:
        ownership.release(lab_id)
    return removed


class Lab:
    """Builds the topology on ``start()`` / ``__enter__`` and removes all of it on ``close()``."""

    def __init__(
        self,
        pods: Sequence[a.PodSpec] = a.DEFAULT_PODS,
        inet_hosts: Sequence[str] = a.DEFAULT_INET_HOSTS,
        *,
        prefix: str = "fq",
        bridge_nf_call: bool = True,
    ) -> None:
        names = [p.name for p in pods]
        if len(set(names)) != len(names) or {NODE, INET} & set(names):
            raise ValueError(f"pod names must be unique and not {NODE!r}/{INET!r}: {names}")
        for pod in pods:
            pod.validate()
        self.pods: tuple[a.PodSpec, ...] = tuple(pods)
        self.inet_hosts: tuple[str, ...] = tuple(str(a.validate_inet_host(h)) for h in inet_hosts)
        self._prefix_arg = prefix
        self._want_bridge_nf_call = bridge_nf_call
        # What the node actually got; None when the kernel has no br_netfilter at all.
        self.bridge_nf_call: bool | None = None
        self.id = f"{prefix}{secrets.token_hex(3)}"
        self.prefix = f"{self.id}-"
        self.inet_hosts_if = INET_HOSTS_IF
        self._procs = ProcessGroups()
        self._created: list[str] = []
        self._started = False
        self._closed = False

    # -- naming ---------------------------------------------------------------------------

    @property
    def short_names(self) -> tuple[str, ...]:
        return (NODE, INET, *(p.name for p in self.pods))

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.ns(n) for n in self.short_names)

    def ns(self, name: str) -> str:
        """Full namespace name for a short one ('node', 'inet', 'pod-a'); full names pass."""
        if name in self.short_names:
            return self.prefix + name
        if name.startswith(self.prefix) and name[len(self.prefix) :] in self.short_names:
            return name
        raise KeyError(f"no namespace {name!r} in lab {self.id}")

    def pod(self, name: str) -> a.PodSpec:
        for p in self.pods:
            if p.name == name:
                return p
        raise KeyError(f"no pod {name!r} in lab {self.id}")

    def pod_veth(self, name: str) -> str:
        """Node-side interface of a pod, e.g. for per-pod nftables matches on iifname."""
        names = [p.name for p in self.pods]
        if name not in names:
            raise KeyError(f"no pod {name!r} in lab {self.id}")
        return f"vpod{names.index(name)}"

    # -- running things -------------------------------------------------------------------

    def run(
        self,
        ns_name: str,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion inside a namespace; text stdout/stderr are captured."""
        return run_captured(
            ["ip", "netns", "exec", self.ns(ns_name), *argv],
            timeout=timeout,
            check=check,
            input=input,
            env=env,
            cwd=cwd,
        )

    def popen(self, ns_name: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a long-running process inside a namespace; ``close()`` ends its whole group."""
        if self._closed:
            raise RuntimeError(f"lab {self.id} is closed")
        return self._procs.spawn(["ip", "netns", "exec", self.ns(ns_name), *argv], **kw)

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Self:
        if self._started:
            return self
        self._started = True
        # Self-healing across runs: a SIGKILLed pytest never reaches close() or atexit.
        cleanup_stale(self._prefix_arg)
        # Registered before the first namespace exists so a crash at any point is recoverable.
        ownership.claim(self.id)
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._procs.terminate_all()
        for netns in reversed(self._created):
            _delete_namespace(netns)
        self._created.clear()
        ownership.release(self.id)

    # -- topology -------------------------------------------------------------------------

    def _ip(self, ns_name: str, *args: str) -> None:
        # Always `ip -n`: a command without a namespace would configure the host itself.
        run_captured(["ip", "-n", self.ns(ns_name), *args], timeout=10, check=True)

    def _sysctl(self, ns_name: str, settings: Sequence[str]) -> None:
        self.run(ns_name, ["sysctl", "-q", "-w", *settings], timeout=10)

    def _add_namespace(self, short: str, extra_sysctls: Sequence[str] = ()) -> None:
        full = self.ns(short)
        run_captured(["ip", "netns", "add", full], timeout=10, check=True)
        self._created.append(full)
        self._sysctl(short, [*_COMMON_SYSCTLS, *extra_sysctls])
        self._ip(short, "link", "set", "lo", "up")

    def _build(self) -> None:
        self._add_namespace(NODE, _ROUTER_SYSCTLS)
        self._add_namespace(INET)
        for pod in self.pods:
            self._add_namespace(pod.name)
        self._build_bridge()
        self._set_bridge_nf_call()
        for index, pod in enumerate(self.pods):
            self._attach_pod(index, pod)
        self._build_uplink()
        self._build_inet_hosts()

    def _build_bridge(self) -> None:
        self._ip(
            NODE,
            *("link", "add", BRIDGE, "address", _BRIDGE_MAC, "type", "bridge"),
            # No STP delay and no multicast snooping: ports forward at once and NDP
            # multicast is flooded instead of waiting for an MLD querier that never comes.
            *("stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"),
        )
        self._ip(NODE, "addr", "add", f"{a.NODE_POD_GW_V4}/{a.POD_NET_V4.prefixlen}", "dev", BRIDGE)
        self._ip(NODE, "addr", "add", f"{a.NODE_POD_GW_V6}/{a.POD_NET_V6.prefixlen}", "dev", BRIDGE, "nodad")
        self._ip(NODE, "link", "set", BRIDGE, "up")

    def _set_bridge_nf_call(self) -> None:
        # With br_netfilter, bridged pod-to-pod frames traverse the node's IPv4/IPv6 (and so
        # nftables inet) forward hooks, as Kubernetes nodes require. Fresh namespaces get
        # whatever the kernel defaults to, so pin it instead of inheriting by accident.
        value = "1" if self._want_bridge_nf_call else "0"
        settings = [f"net.bridge.bridge-nf-call-{t}={value}" for t in ("iptables", "ip6tables")]
        res = self.run(NODE, ["sysctl", "-q", "-w", *settings], timeout=10, check=False)
        self.bridge_nf_call = self._want_bridge_nf_call if res.returncode == 0 else None

    def _attach_pod(self, index: int, pod: a.PodSpec) -> None:
        veth = f"vpod{index}"
        # Created from inside node with the peer placed straight into the pod, so no
        # interface ever appears in the root namespace, even briefly.
        pod_ns = self.ns(pod.name)
        self._ip(NODE, "link", "add", veth, "type", "veth", "peer", "name", POD_IF, "netns", pod_ns)
        self._ip(NODE, "link", "set", veth, "master", BRIDGE, "up")
        self._ip(pod.name, "addr", "add", f"{pod.ipv4}/{a.POD_NET_V4.prefixlen}", "dev", POD_IF)
        self._ip(pod.name, "addr", "add", f"{pod.ipv6}/{a.POD_NET_V6.prefixlen}", "dev", POD_IF, "nodad")
        self._ip(pod.name, "link", "set", POD_IF, "up")
        self._ip(pod.name, "route", "add", "default", "via", a.NODE_POD_GW_V4)
        self._ip(pod.name, "-6", "route", "add", "default", "via", a.NODE_POD_GW_V6)

    def _build_uplink(self) -> None:
        self._ip(
            NODE, "link", "add", NODE_UPLINK_IF, "type", "veth", "peer", "name", INET_UPLINK_IF,
            "netns", self.ns(INET),
        )  # fmt: skip
        self._ip(NODE, "addr", "add", f"{a.NODE_UPLINK_V4}/{a.TRANSIT_PREFIX_V4}", "dev", NODE_UPLINK_IF)
        self._ip(
            NODE, "addr", "add", f"{a.NODE_UPLINK_V6}/{a.TRANSIT_PREFIX_V6}", "dev", NODE_UPLINK_IF, "nodad"
        )
        self._ip(NODE, "link", "set", NODE_UPLINK_IF, "up")
        self._ip(INET, "addr", "add", f"{a.INET_UPLINK_V4}/{a.TRANSIT_PREFIX_V4}", "dev", INET_UPLINK_IF)
        self._ip(
            INET, "addr", "add", f"{a.INET_UPLINK_V6}/{a.TRANSIT_PREFIX_V6}", "dev", INET_UPLINK_IF, "nodad"
        )
        self._ip(INET, "link", "set", INET_UPLINK_IF, "up")
        self._ip(NODE, "route", "add", str(a.INTERNET_NET_V4), "via", a.INET_UPLINK_V4)
        self._ip(NODE, "-6", "route", "add", str(a.INTERNET_NET_V6), "via", a.INET_UPLINK_V6)
        self._ip(INET, "route", "add", str(a.CLUSTER_NET_V4), "via", a.NODE_UPLINK_V4)
        self._ip(INET, "-6", "route", "add", str(a.POD_NET_V6), "via", a.NODE_UPLINK_V6)

    def _build_inet_hosts(self) -> None:
        try:
            self._ip(INET, "link", "add", INET_HOSTS_IF, "type", "dummy")
            self._ip(INET, "link", "set", INET_HOSTS_IF, "up")
        except subprocess.CalledProcessError:
            # Some kernels (e.g. minimal VM kernels) ship without CONFIG_DUMMY. Addresses on
            # loopback are just as local for a host that only terminates connections.
            self.inet_hosts_if = "lo"
        for host in self.inet_hosts:
            ip = ipaddress.ip_address(host)
            if ip.version == 4:
                self._ip(INET, "addr", "add", f"{host}/32", "dev", self.inet_hosts_if)
            else:
                self._ip(INET, "addr", "add", f"{host}/128", "dev", self.inet_hosts_if, "nodad")
            if not a.is_covered_by_internet_route(ip):
                via = a.INET_UPLINK_V4 if ip.version == 4 else a.INET_UPLINK_V6
                family = "-4" if ip.version == 4 else "-6"
                self._ip(NODE, family, "route", "add", host, "via", via)
