"""Starting and steering the fake internet (tests.lab.fakeinternet) from a test."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from tests.lab.addressing import DNS_V4, DNS_V6
from tests.lab.hostport import format_hostport
from tests.lab.netlab import INET, Lab
from tests.lab.pyrun import REPO_ROOT, module_argv, module_env
from tests.lab.slowdown import patience

DEFAULT_DNS: tuple[str, ...] = (format_hostport(DNS_V4, 53), format_hostport(DNS_V6, 53))


def write_zone(path: Path, zone: Mapping[str, Any]) -> None:
    # Replace, never rewrite in place: the server must not read a half-written file, and a
    # new inode is noticed even when size and coarse mtime happen to match the old file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(dict(zone), sort_keys=False))
    os.replace(tmp, path)


class FakeInternet:
    """One fakeinternet process in the lab's ``inet`` namespace, with its files in ``workdir``."""

    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        zone: Mapping[str, Any],
        *,
        dns: Sequence[str] = DEFAULT_DNS,
        tcp_ports: Sequence[int] = (80, 443),
        udp_ports: Sequence[int] = (443,),
        echo_ports: Sequence[int] = (7,),
    ) -> None:
        self.lab = lab
        self.zone_path = workdir / "zone.yaml"
        self.stats_path = workdir / "upstream-stats.json"
        self.ready_path = workdir / "upstream-ready.json"
        self.log_path = workdir / "upstream.log"
        self._zone = dict(zone)
        self._dns, self._tcp, self._udp = tuple(dns), tuple(tcp_ports), tuple(udp_ports)
        self._echo = tuple(echo_ports)
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> Self:
        write_zone(self.zone_path, self._zone)
        for stale in (self.ready_path, self.stats_path):
            stale.unlink(missing_ok=True)
        args = ["--zone", str(self.zone_path), "--stats-file", str(self.stats_path)]
        args += ["--ready-file", str(self.ready_path)]
        for d in self._dns:
            args += ["--dns", d]
        for p in self._tcp:
            args += ["--tcp", str(p)]
        for p in self._udp:
            args += ["--udp", str(p)]
        for p in self._echo:
            args += ["--echo", str(p)]
        with self.log_path.open("wb") as log:
            self._proc = self.lab.popen(
                INET,
                module_argv("tests.lab.fakeinternet", *args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=module_env(),
                cwd=REPO_ROOT,
            )
        try:
            self._wait(lambda: self.ready_path.exists(), patience(timeout), "ready file")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit status (0 for a clean shutdown)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- zone -------------------------------------------------------------------------------

    @property
    def zone(self) -> dict[str, Any]:
        return dict(self._zone)

    def set_zone(self, zone: Mapping[str, Any], *, timeout: float = 5.0) -> None:
        """Replace the zone and wait until the server has loaded it."""
        before = self.stats()["zone_version"]
        self._zone = dict(zone)
        write_zone(self.zone_path, self._zone)
        self._wait(lambda: self.stats()["zone_version"] > before, patience(timeout), "zone reload")

    # -- statistics -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stats_path.read_text())
        return data

    def query_count(
        self, name: str | None = None, qtype: str | None = None, transport: str | None = None
    ) -> int:
        """Queries seen so far, filtered by any of name (case/trailing-dot insensitive),
        type and transport ('udp'/'tcp')."""
        want = name.rstrip(".").lower() if name is not None else None
        return sum(
            q["count"]
            for q in self.stats()["queries"]
            if (want is None or q["name"] == want)
            and (qtype is None or q["type"] == qtype.upper())
            and (transport is None or q["transport"] == transport)
        )

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"fakeinternet exited ({self._proc.returncode}) waiting for {what}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"fakeinternet: no {what} after {timeout}s:\n{self.log()}")
            time.sleep(0.02)
