"""Standalone mode: one YAML file, re-read when it changes (polled) or on SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from fqdn_policy.logs import get
from fqdn_policy.policy.model import PolicySet
from fqdn_policy.sources.base import PolicyUpdate, SourceRefused
from fqdn_policy.sources.documentcache import DocumentCache
from fqdn_policy.sources.fileloader import FileProblem, PolicyFileError, load_file, pattern_warnings

DEFAULT_WATCH_INTERVAL = 1.0
# One policy.warnings line per load carries at most this many (and the count): bounded however many
# policies have a broad pattern.
MAX_LOGGED_WARNINGS = 50

Stamp = tuple[int, int, int]


class FileSource:
    def __init__(self, path: Path, watch_interval: float = DEFAULT_WATCH_INTERVAL) -> None:
        self.path = path
        self.watch_interval = watch_interval
        self.description = f"file {path}"
        self.log: Any = get("fqdn_policy.agent")
        self._stamp: Stamp | None = None
        self._reload_requests: list[str] = []
        self._wake = asyncio.Event()
        self.refused = 0
        # The last good file's documents: a reload parses only the documents that changed.
        self.documents = DocumentCache()

    async def first(self) -> PolicySet:
        try:
            policy_set, warnings = self._load_and_check()
        except PolicyFileError as error:
            raise SourceRefused(f"policy file refused:\n{error}") from error
        self._warn(warnings)
        return policy_set

    def reload(self, reason: str) -> None:
        self._reload_requests.append(reason)
        self._wake.set()

    async def next(self) -> PolicyUpdate:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.watch_interval)
            self._wake.clear()
            if self._reload_requests:
                reason = self._reload_requests[-1]
                self._reload_requests.clear()
            elif self._file_stamp() not in (None, self._stamp):
                reason = "file changed"
            else:
                continue  # unchanged, or being replaced: the next poll sees the new one
            try:
                # Parsing (and finding the broad patterns) runs in a thread: a large file must not
                # stall lookups meanwhile.
                policy_set, warnings = await asyncio.to_thread(self._load_and_check)
            except PolicyFileError as error:
                self.refused += 1
                self.log.error(
                    "policy.refused",
                    reason=reason,
                    file=str(self.path),
                    problems=[str(p) for p in error.problems],
                    keeping="last good policy",
                )
                continue
            self._warn(warnings)
            return PolicyUpdate(policy_set, reason)

    async def close(self) -> None:
        pass

    def _file_stamp(self) -> Stamp | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load_and_check(self) -> tuple[PolicySet, list[FileProblem]]:
        """The file's PolicySet and its broad patterns (policy.spec.breadth). The warnings name the document
        by kind and key, without a line: lines would cost parsing the whole file again each reload."""
        # Stamped before reading, refused or not: a bad file is reported once, not at every poll.
        self._stamp = self._file_stamp()
        policy_set = load_file(self.path, self.documents)
        return policy_set, pattern_warnings(policy_set, str(self.path))

    def _warn(self, warnings: list[FileProblem]) -> None:
        """One bounded line per load, written on the loop rather than in the parsing thread."""
        if warnings:
            self.log.warning(
                "policy.warnings",
                file=str(self.path),
                count=len(warnings),
                warnings=[str(w) for w in warnings[:MAX_LOGGED_WARNINGS]],
                hint=f"fqdn-policy check {self.path} gives each one's line",
            )
