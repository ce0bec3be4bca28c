"""Drop attribution: reads the packets the deny rules log to the NFLOG group and writes one line per
denied connection, saying which pod, where to, and which names the pod had resolved to that address.

One line per connection, not per packet: a dropped TCP connect retransmits its SYN (1 s, 3 s, 7 s ...
later, same source port), so a connection (source, source port, destination, protocol, port) seen in
the last DEDUP_SECONDS is counted once. The kernel logs at most `--drop-log-rate` packets a second; the
packets beyond it are still denied and counted in the `drops_unlogged` counter, which is read every
COUNTER_POLL_SECONDS and reported as an `egress.unlogged` line.

Only one socket per network namespace can bind a group. An agent that starts while the one it
replaces still holds the group retries every BIND_RETRY_SECONDS and takes over once the old one exits
(the kernel unbinds a group when its socket closes); meanwhile the old agent keeps reporting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from fqdn_policy.agent.netlinkbind import BIND_RETRY_SECONDS, bind_or_retry
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.nflogsocket import GroupBusy, NflogSocket
from fqdn_policy.enforcer.nflogwire import LoggedPacket
from fqdn_policy.enforcer.nft import Nft
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.logs import get
from fqdn_policy.policy.diagnose.dropattribution import NameMemory, attribute
from fqdn_policy.policy.diagnose.dropstats import DropStats
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable

DEDUP_SECONDS = 120.0
DEDUP_LIMIT = 16384
COUNTER_POLL_SECONDS = 5.0

Connection = tuple[str, int | None, str, str, int | None]


class RecentConnections:
    """Connections already reported, so retransmissions of their first packet are not reported again."""

    def __init__(self, window: float = DEDUP_SECONDS, limit: int = DEDUP_LIMIT) -> None:
        self.window = window
        self.limit = limit
        self._seen: dict[Connection, float] = {}

    def first_time(self, connection: Connection, now: float) -> bool:
        seen = self._seen.get(connection)
        if seen is not None and now - seen < self.window:
            return False
        self._seen.pop(connection, None)
        self._seen[connection] = now
        while len(self._seen) > self.limit:
            del self._seen[next(iter(self._seen))]
        return True


class DropPolicy(Protocol):
    """What a denied packet is explained against (the PolicyGate): read at each packet, since a reload
    swaps the index."""

    @property
    def index(self) -> PolicyIndex: ...

    @property
    def table(self) -> AllowTable: ...

    @property
    def names(self) -> NameMemory: ...


class DropTables(Protocol):
    """The tables' side (fqdn_policy.enforcer.tables.EnforcerTables): who gets a fast failure, and the
    kernel's count of denied packets the log rate kept out of the log."""

    def rejects(self, index: PolicyIndex, ip: str) -> bool: ...

    def unlogged_packets(self, nft: Nft) -> int: ...


class DropReporter:
    def __init__(
        self,
        group: int,
        policy: DropPolicy,
        tables: DropTables,
        writer: SetWriter,
        clock: Callable[[], float] = time.monotonic,
        socket_factory: Callable[[int], NflogSocket] = NflogSocket,
    ) -> None:
        self.group = group
        self.policy = policy
        self.tables = tables
        self.writer = writer
        self.clock = clock
        self.connections = RecentConnections()
        self.stats = DropStats()  # what the drops metrics read (fqdn_policy.ops.agentmetrics)
        self.reading = False
        self._socket_factory = socket_factory
        self._sock: NflogSocket | None = None
        self._unlogged_base: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._overflows_reported = 0
        self.log = get("fqdn_policy.drops")

    @property
    def drops_by_pod(self) -> dict[str, int]:
        return self.stats.by_pod

    @property
    def unlogged(self) -> int:
        return self.stats.unlogged

    async def start(self) -> None:
        retrying = bind_or_retry(
            self._bind,
            (GroupBusy,),
            lambda: self.log.warning(
                "drops.group_busy",
                nflog_group=self.group,
                detail="another process (the agent this one replaces?) reads the group; retrying",
            ),
            lambda error: self.log.error("drops.log_unavailable", nflog_group=self.group, error=str(error)),
            BIND_RETRY_SECONDS,
        )
        if retrying is not None:
            self._tasks.append(retrying)
        await self.check_unlogged()  # the counter's value now is the base: earlier packets are not ours
        self._tasks.append(asyncio.create_task(self._poll_unlogged()))

    def _bind(self) -> None:
        sock = self._socket_factory(self.group)
        try:
            sock.bind()
        except OSError:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self.reading = True
        self.log.info("drops.reading", nflog_group=self.group)

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            packets = self._sock.read()
        except OSError as error:
            self.log.error("drops.read_failed", error=str(error))
            return
        for packet in packets:
            self.report(packet)
        if self._sock.overflows > self._overflows_reported:
            self.log.warning("drops.log_overflow", times=self._sock.overflows - self._overflows_reported)
            self._overflows_reported = self._sock.overflows

    def report(self, packet: LoggedPacket) -> dict[str, Any] | None:
        """Explain one logged packet; returns the line's fields, or None for a repeat or a stranger's."""
        if not packet.prefix.startswith(ruleset.LOG_PREFIX):
            return None  # someone else logs to this group too
        now = self.clock()
        connection = (packet.source, packet.source_port, packet.destination, packet.protocol, packet.port)
        if not self.connections.first_time(connection, now):
            return None
        audit = packet.prefix.endswith(ruleset.Mode.AUDIT.value)
        policy = self.policy
        index = policy.index
        found = attribute(
            packet.source,
            packet.destination,
            packet.protocol,
            packet.port,
            index,
            policy.table,
            policy.names,
            now,
        )
        self.stats.count(found.pod or packet.source)
        fields: dict[str, Any] = {
            "pod": found.pod,
            "source": packet.source,
            "destination": packet.destination,
            "protocol": packet.protocol,
            "port": packet.port,
            "verdict": "accept (audit)"
            if audit
            else "reject"
            if self.tables.rejects(index, packet.source)
            else "drop",
            **{k: v for k, v in found.fields().items() if k != "pod"},
        }
        self.log.info("egress.would_drop" if audit else "egress.dropped", **fields)
        return fields

    async def _poll_unlogged(self) -> None:
        while True:
            await asyncio.sleep(COUNTER_POLL_SECONDS)
            await self.check_unlogged()

    async def check_unlogged(self) -> None:
        """Report denied packets the rate limit kept out of the log since the last check."""
        try:
            total = await self.writer.call(self.tables.unlogged_packets)
        except Exception as error:  # the table is being repaired; the next poll reads it
            self.log.debug("drops.counter_unreadable", error=str(error))
            return
        if self._unlogged_base is None or total < self._unlogged_base:
            # First read, or the counter was recreated: count from here.
            self._unlogged_base = total if self._unlogged_base is None else 0
        delta = total - self._unlogged_base
        if delta > 0:
            self.stats.unlogged += delta
            self.log.warning(
                "egress.unlogged",
                packets=delta,
                since_start=self.stats.unlogged,
                detail="denied packets beyond the log rate limit: denied and counted, not logged",
            )
        self._unlogged_base = total

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            self.reading = False
