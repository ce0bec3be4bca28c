"""Counts the queries that reached the fake upstream, so tests can assert on caching and
on which queries a forwarder let through.

The JSON file is rewritten (atomically) after every query and every zone reload:

    {"total": 3, "zone_version": 1,
     "queries": [{"name": "www.google.com", "type": "A", "transport": "udp", "count": 2}, ...],
     "clients": {"203.0.113.1": 3}}
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any


class QueryStats:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.clients: Counter[str] = Counter()
        self.zone_version = 0

    def record(self, name: str, qtype: str, transport: str, client: str) -> None:
        self.counts[(name, qtype, transport)] += 1
        self.clients[client] += 1
        self.write()

    def set_zone_version(self, version: int) -> None:
        self.zone_version = version
        self.write()

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": sum(self.counts.values()),
            "zone_version": self.zone_version,
            "queries": [
                {"name": n, "type": t, "transport": tr, "count": c}
                for (n, t, tr), c in sorted(self.counts.items())
            ],
            "clients": dict(sorted(self.clients.items())),
        }

    def write(self) -> None:
        if self.path is None:
            return
        # Readers poll this file; a rename means they never see half of it.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, self.path)
