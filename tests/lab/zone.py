"""The fake internet's zone: a YAML mapping of names to records and per-name behaviour.

    www.google.com: {A: [198.51.100.10], AAAA: ["2001:db8:100::10"], ttl: 300}
    alias.example.com: {CNAME: www.google.com, ttl: 60}
    mail.example.com: {MX: [[10, mx.example.com]]}
    txt.example.com: {TXT: ["v=spf1 -all", ["two", "strings"]]}
    srv.example.com: {SRV: [[10, 5, 443, www.google.com]]}
    example.com: {SOA: [ns.example.com, admin.example.com, 1, 3600, 600, 86400, 30]}
    "*.wild.example.com": {A: [198.51.100.30]}
    slow.example.com: {A: [198.51.100.10], delay_ms: 800}
    broken.example.com: {servfail: true}        # or rcode: REFUSED
    blackhole.example.com: {drop: true}          # never answered
    forcetc.example.com: {A: [...], tc: true}    # always truncated over UDP
    cut.example.com: {A: [...], truncate: cut}   # truncated answers keep what fits

Records of a name share its ``ttl`` (default 300). An ``SOA`` on a name or an ancestor is
put in the authority section of NXDOMAIN/NODATA answers, as negative caches expect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dnslib import AAAA, CNAME, MX, NS, PTR, RCODE, RD, SOA, SRV, TXT, A, DNSLabel

DEFAULT_TTL = 300
_OPTION_KEYS = frozenset({"ttl", "servfail", "drop", "delay_ms", "rcode", "tc", "truncate"})


def canonical(name: str | DNSLabel) -> str:
    """Lower-case, no trailing dot: the one spelling used for lookups and statistics."""
    text = str(name)
    return text.rstrip(".").lower()


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _txt(value: Any) -> RD:
    # A TXT record is one or more character-strings; a bare string means one.
    return TXT([str(s) for s in value] if isinstance(value, list | tuple) else str(value))


def _soa(value: Any) -> RD:
    mname, rname, *times = value
    return SOA(str(mname), str(rname), tuple(int(t) for t in times))


_RDATA_BUILDERS: dict[str, Callable[[Any], RD]] = {
    # ipaddress first: dnslib's own errors for a bad address do not say what was wrong.
    "A": lambda v: A(str(ipaddress.IPv4Address(str(v)))),
    "AAAA": lambda v: AAAA(str(ipaddress.IPv6Address(str(v)))),
    "NS": lambda v: NS(str(v)),
    "PTR": lambda v: PTR(str(v)),
    "MX": lambda v: MX(str(v[1]), int(v[0])),
    "SRV": lambda v: SRV(int(v[0]), int(v[1]), int(v[2]), str(v[3])),
    "TXT": _txt,
}


@dataclass(frozen=True)
class Entry:
    name: str
    ttl: int = DEFAULT_TTL
    records: Mapping[str, tuple[RD, ...]] = field(default_factory=dict)
    cname: str | None = None
    rcode: int | None = None
    drop: bool = False
    delay_ms: int = 0
    force_tc: bool = False
    truncate: str = "empty"


def _parse_entry(name: str, spec: Mapping[str, Any] | None) -> Entry:
    spec = spec or {}
    records: dict[str, tuple[RD, ...]] = {}
    cname: str | None = None
    for key, value in spec.items():
        rtype = str(key).upper()
        if key in _OPTION_KEYS:
            continue
        if rtype == "CNAME":
            cname = canonical(str(value))
            records["CNAME"] = (CNAME(str(value)),)
        elif rtype == "SOA":
            records["SOA"] = (_soa(value),)
        elif rtype in _RDATA_BUILDERS:
            records[rtype] = tuple(_RDATA_BUILDERS[rtype](v) for v in _as_list(value))
        else:
            raise ValueError(f"{name}: unsupported key {key!r}")
    if cname is not None and set(records) - {"CNAME"}:
        raise ValueError(f"{name}: CNAME cannot coexist with other records")
    rcode: int | None = None
    if spec.get("servfail"):
        rcode = RCODE.SERVFAIL
    if "rcode" in spec:
        rcode = getattr(RCODE, str(spec["rcode"]).upper())
    truncate = str(spec.get("truncate", "empty"))
    if truncate not in ("empty", "cut"):
        raise ValueError(f"{name}: truncate must be 'empty' or 'cut'")
    return Entry(
        name=name,
        ttl=int(spec.get("ttl", DEFAULT_TTL)),
        records=records,
        cname=cname,
        rcode=rcode,
        drop=bool(spec.get("drop", False)),
        delay_ms=int(spec.get("delay_ms", 0)),
        force_tc=bool(spec.get("tc", False)),
        truncate=truncate,
    )


class Zone:
    def __init__(self, entries: Mapping[str, Entry]) -> None:
        self.entries = dict(entries)
        # Every proper suffix of a configured name exists in the DNS tree (an "empty
        # non-terminal"), so it must get NODATA rather than NXDOMAIN.
        self._ancestors: set[str] = set()
        for name in self.entries:
            labels = name.split(".")
            for i in range(1, len(labels)):
                self._ancestors.add(".".join(labels[i:]))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Zone:
        entries: dict[str, Entry] = {}
        for raw_name, spec in (data or {}).items():
            name = canonical(str(raw_name))
            if spec is not None and not isinstance(spec, Mapping):
                raise ValueError(f"{raw_name}: expected a mapping, got {type(spec).__name__}")
            entries[name] = _parse_entry(name, spec)
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> Zone:
        return cls.from_mapping(yaml.safe_load(path.read_text()))

    def lookup(self, name: str) -> Entry | None:
        entry = self.entries.get(name)
        if entry is not None:
            return entry
        if name in self._ancestors:
            return None
        # Closest-encloser wildcard, as in RFC 4592 (simplified: no wildcard below an
        # existing name is shadowed, which the lab never needs).
        labels = name.split(".")
        for i in range(1, len(labels)):
            wild = self.entries.get("*." + ".".join(labels[i:]))
            if wild is not None:
                return wild
        return None

    def exists(self, name: str) -> bool:
        return self.lookup(name) is not None or name in self._ancestors

    def soa_for(self, name: str) -> Entry | None:
        labels = name.split(".")
        for i in range(len(labels)):
            entry = self.entries.get(".".join(labels[i:]))
            if entry is not None and "SOA" in entry.records:
                return entry
        return None


class ZoneFile:
    """Holds the current zone and reloads it when the file changes.

    The stamp includes the inode so an atomic replace is noticed even within the same
    coarse mtime tick. A file that does not parse (e.g. caught mid-write) keeps the old
    zone and is retried on the next poll."""

    def __init__(self, path: Path | None, on_reload: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.version = 0
        self.zone = Zone({})
        self._stamp: tuple[int, int, int] | None = None
        self._last_error: str | None = None
        self._on_reload = on_reload
        if path is not None:
            self.poll()
            if self.version == 0:
                raise ValueError(f"cannot load zone {path}: {self._last_error}")

    def poll(self) -> bool:
        if self.path is None:
            return False
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._report(str(exc))
            return False
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        try:
            zone = Zone.load(self.path)
        except (OSError, ValueError, TypeError, IndexError, AttributeError, yaml.YAMLError) as exc:
            self._report(f"{type(exc).__name__}: {exc}")
            return False
        self.zone, self._stamp, self._last_error = zone, stamp, None
        self.version += 1
        if self._on_reload is not None:
            self._on_reload(self.version)
        return True

    def _report(self, message: str) -> None:
        if message != self._last_error:
            print(f"fakeinternet: zone {self.path}: {message}", file=sys.stderr, flush=True)
        self._last_error = message

    async def watch(self, interval: float = 0.2) -> None:
        while True:
            await asyncio.sleep(interval)
            self.poll()
