"""The running agent: wires the policy source, the DNS server and the enforcer, and owns their lifecycle.

Start: take the first PolicySet from the source (a bad file refuses the start; Kubernetes mode waits for
the first complete list), create or adopt the nftables table in one transaction (existing allow
elements are kept and taken over), then listen. Update (a changed file, SIGHUP, a watch event): the
source hands over a new PolicySet; the agent swaps the rule index first, waits for writes decided under
the old one, then applies the difference in one transaction, at most once per `min_apply_interval` so a
burst of changes is one reconcile. Stop (SIGTERM): stop listening, let in-flight queries finish, leave
the table in place so allowed flows keep working.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import time
from dataclasses import dataclass, field

from fqdn_policy.agent.collector import CollectorRegime, WholeCollection
from fqdn_policy.agent.drops import DropReporter
from fqdn_policy.agent.gate import PolicyGate, histogram_summary
from fqdn_policy.agent.opswiring import ops_routes
from fqdn_policy.agent.redirect import DnsRedirector, plan
from fqdn_policy.dnsproxy.ratelimit import DEFAULT_RATE, ClientRateLimiter
from fqdn_policy.dnsproxy.server import DnsServer, Resolver, TcpLimits
from fqdn_policy.dnsproxy.upstream import DEFAULT_MAX_IN_FLIGHT, Forwarder, UpstreamAddress
from fqdn_policy.enforcer import guard, ruleset
from fqdn_policy.enforcer.dnsredirect import DEFAULT_DNS_TABLE
from fqdn_policy.enforcer.elementsocket import ElementSocket
from fqdn_policy.enforcer.kernelfeatures import Needs
from fqdn_policy.enforcer.kernelprobe import KernelReport, KernelUnsupported, probe_kernel
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.enforcer.tables import EnforcerTables
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.logs import get
from fqdn_policy.ops.collectorpauses import CollectorPauses
from fqdn_policy.ops.decisionlog import DEFAULT_LINE_RATE, DEFAULT_WINDOW, DecisionLog, LogMode
from fqdn_policy.ops.health import Health
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.ops.httpserve import HttpServer
from fqdn_policy.ops.opsapi import public_routes
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.model import PolicySet
from fqdn_policy.policy.state.allowtable import DEFAULT_MAX_ADDRESSES_PER_NAME, AllowTable
from fqdn_policy.policy.state.budget import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRIES_PER_POD, EntryBudget
from fqdn_policy.policy.state.ttl import DEFAULT_MAX_TTL, DEFAULT_MIN_TTL, DEFAULT_REFRESH_SLACK, TTLPolicy
from fqdn_policy.sources.base import PolicySource, SourceRefused

DRAIN_SECONDS = 3.0
# Keys of each kind per sweep slice: a 100,000-key mass expiry went in 31 ms slices at 5,000.
EXPIRY_SWEEP_LIMIT = 2_000
EXPIRY_SWEEP_SECONDS = (
    5.0  # a sweep costs what expired (fqdn_policy.policy.state.expirywheel), so it can run often
)
LOG_FLUSH_SECONDS = 0.5
REPEAT_LINES_PER_SLICE = 1_000  # ~3.5 ms of writing between two chances for the loop to answer
# Allocations between young collections. With survivors frozen (agent.collector) there is no middle
# generation to feed, so shorter, more frequent pauses cost no throughput: 5,000 against 20,000 in
# bench.ab, 7 rounds each, added p99 at 2,000 qps median 1.62 against 2.33 ms (docs/benchmarks.md).
GC_THRESHOLD = 5_000
# How long the first answer of a burst may be held while later ones are decided before their writes
# go in one transaction (fqdn_policy.enforcer.writer); a cold decision takes ~50 us here (docs/benchmarks.md).
WRITE_BATCH_WAIT = 0.00005
MIN_APPLY_INTERVAL = 0.1
DEFAULT_METRICS = ("127.0.0.1", 9153)
FILE_MARGIN = 256  # descriptors besides TCP clients: listeners, upstream sockets, netlink, logs


@dataclass(slots=True)
class AgentConfig:
    listen: list[tuple[str, int]]
    upstreams: list[UpstreamAddress]
    table: str = ruleset.DEFAULT_TABLE
    min_ttl: int = DEFAULT_MIN_TTL
    max_ttl: int = DEFAULT_MAX_TTL
    refresh_slack: float = DEFAULT_REFRESH_SLACK
    max_addresses_per_name: int = DEFAULT_MAX_ADDRESSES_PER_NAME
    max_entries_per_pod: int = DEFAULT_MAX_ENTRIES_PER_POD  # entry budgets (fqdn_policy.policy.state.budget)
    max_entries: int = DEFAULT_MAX_ENTRIES
    exempt: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    upstream_timeout: float = 1.0
    attempts: int = 3
    watchdog_interval: float = 1.0
    log_decisions: LogMode = LogMode.CHANGES
    log_window: float = DEFAULT_WINDOW
    log_rate: float = DEFAULT_LINE_RATE  # decision lines per second per pod; 0 = no limit
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    client_rate: float = DEFAULT_RATE
    # Cluster DNS service addresses whose port-53 traffic from pods is DNATed to the first `listen`
    # address of the same family, in table `dns_table` (Kubernetes mode; see docs/kubernetes.md).
    dns_services: list[tuple[str, int]] = field(default_factory=list)
    dns_table: str = DEFAULT_DNS_TABLE
    metrics: tuple[str, int] | None = DEFAULT_METRICS  # /metrics, /healthz, /readyz, /state; None = off
    public_metrics: tuple[str, int] | None = None  # /metrics only, for a remote Prometheus; None = off
    mode: ruleset.Mode = ruleset.Mode.ENFORCE  # audit: denied packets are logged and accepted
    reject: bool = False  # every enforced pod gets a fast failure, not only those of rejecting policies
    nflog_group: int | None = ruleset.DEFAULT_NFLOG_GROUP  # None: denied packets are not logged
    drop_log_rate: int = ruleset.DEFAULT_LOG_RATE
    min_apply_interval: float = MIN_APPLY_INTERVAL  # seconds between two applied policy updates

    @property
    def denial(self) -> ruleset.Denial:
        return ruleset.Denial(self.mode, self.nflog_group, self.drop_log_rate)

    guard_mark: int = guard.DEFAULT_GUARD_MARK  # 0: no guard table (see fqdn_policy/enforcer/guard.py)
    tcp_limits: TcpLimits = field(default_factory=TcpLimits)
    gc_young: int = GC_THRESHOLD  # young-generation collection threshold (objects); see gc.set_threshold
    element_refresh: str = "auto"  # "auto" (probed), or a Refresh to insist on (refused if it fails)

    @property
    def kernel_needs(self) -> Needs:
        return Needs(
            reject=self.mode is ruleset.Mode.ENFORCE,
            nflog=self.nflog_group is not None,
            guard_mark=bool(self.guard_mark) and self.mode is ruleset.Mode.ENFORCE,
            dns_redirect=bool(self.dns_services),
        )


class StartupError(RuntimeError):
    pass


class Agent:
    def __init__(self, config: AgentConfig, source: PolicySource) -> None:
        self.config = config
        self.source = source
        self.log = get("fqdn_policy.agent")
        self.health = Health(watchdog_interval=config.watchdog_interval)
        self.nft_latency = Histogram()
        self.upstream_latency = Histogram()
        self.collector_pauses = CollectorPauses()
        self.collector: CollectorRegime | None = None
        self.writer = SetWriter(on_latency=self.nft_latency.observe, max_wait=WRITE_BATCH_WAIT)
        self.table = AllowTable(
            TTLPolicy(config.min_ttl, config.max_ttl, config.refresh_slack),
            config.max_addresses_per_name,
            EntryBudget(config.max_entries_per_pod, config.max_entries),
        )
        self.tables = EnforcerTables(config, self.table)
        self.forwarder = Forwarder(
            config.upstreams,
            config.upstream_timeout,
            config.attempts,
            max_in_flight=config.max_in_flight,
            on_latency=self.upstream_latency.observe,
        )
        self.decision_log = DecisionLog(
            mode=config.log_decisions, window=config.log_window, rate=config.log_rate
        )
        self.gate: PolicyGate | None = None
        self.resolver: Resolver | None = None
        self.servers: list[DnsServer] = []
        self.ops: list[HttpServer] = []  # the --metrics listener, then --public-metrics
        self._reload_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._repairing: asyncio.Task[None] | None = None
        self.redirector = DnsRedirector(
            self.writer, config.dns_table, plan(config.dns_services, config.listen)
        )
        # What pods resolved that the AllowTable does not hold (denied names, expired allowances).
        self.names = NameMemory()
        self.drops: DropReporter | None = None
        self.kernel: KernelReport | None = (
            None  # what the start-up probe found (fqdn_policy.enforcer.kernelprobe)
        )

    @property
    def index(self) -> PolicyIndex:
        assert self.gate is not None
        return self.gate.index

    async def start(self) -> None:
        # First, so /healthz answers and /readyz says "starting" while the table is set up.
        local = ops_routes(self)
        for what, address, table in (
            ("metrics", self.config.metrics, local),
            ("--public-metrics", self.config.public_metrics, public_routes(local)),
        ):
            if address is not None:
                server = HttpServer(*address, table)
                try:
                    await server.start()
                except OSError as error:
                    raise StartupError(
                        f"cannot serve {what} on {address[0]}:{address[1]}: {error}"
                    ) from error
                self.ops.append(server)
        try:
            policy_set = await self.source.first()
        except SourceRefused as error:
            raise StartupError(str(error)) from error
        index = PolicyIndex(policy_set)
        guard = AddressGuard(self.config.protected, node_addresses())
        self.gate = PolicyGate(
            index,
            self.table,
            guard,
            self.writer,
            self.config.table,
            on_write_failure=self._write_failed,
            decision_log=self.decision_log,
            names=self.names,
        )
        await self._probe_kernel()
        try:
            await self.writer.call(lambda nft: self.tables.install(nft, index, refresh=self.writer.refresh))
        except Exception as error:
            raise StartupError(f"cannot program nftables table {self.config.table!r}: {error}") from error
        await self._reconcile(index)
        self._log_uncomposed(policy_set)
        if self.config.nflog_group is not None:
            self.drops = DropReporter(self.config.nflog_group, self.gate, self.tables, self.writer)
            await self.drops.start()
        self.forwarder.after_answers = self.writer.flush
        await self.forwarder.start()
        limiter = (
            ClientRateLimiter(self.config.client_rate, 2 * self.config.client_rate)
            if self.config.client_rate
            else None
        )
        resolver = self.resolver = Resolver(self.forwarder, self.gate, limiter)
        self._raise_open_file_limit()
        for host, port in self.config.listen:
            server = DnsServer(resolver, host, port, self.config.tcp_limits)
            await server.start()
            self.servers.append(server)
        try:
            await self.redirector.install()  # only now: something listens where it points
        except Exception as error:
            raise StartupError(
                f"cannot program the DNS redirect table {self.config.dns_table!r}: {error}"
            ) from error
        self._tasks = [
            asyncio.create_task(self._follow_source()),
            asyncio.create_task(self._sweep_expired()),
            asyncio.create_task(self._watchdog()),
            asyncio.create_task(self._flush_logs()),
        ]
        # What lives now (the policy index, the adopted elements) is frozen, and so is whatever later
        # survives a young collection: see fqdn_policy.agent.collector.
        self.collector = CollectorRegime(
            self.config.gc_young, asyncio.get_running_loop().call_soon_threadsafe, self._collected_whole
        )
        self.collector.install()
        self.collector_pauses.install()
        self.health.record_start(time.monotonic())
        self.log.info(
            "agent.ready",
            source=self.source.description,
            listen=[f"{h}:{p}" for h, p in self.config.listen],
            upstreams=[str(u) for u in self.config.upstreams],
            policies=len(policy_set.policies),
            pods=len(policy_set.pods),
            enforced_pods=index.enforced_pods(),
            adopted_elements=len(self.table),
            table=f"{ruleset.FAMILY} {self.config.table}",
            mode=self.config.mode.value,
            reject="all pods" if self.config.reject else "pods of policies annotated on-deny: reject",
            nflog_group=self.config.nflog_group,
            kernel=self.kernel.release if self.kernel else None,
            element_refresh=self.writer.refresh.value,
        )

    async def _probe_kernel(self) -> None:
        """Refuse a kernel that lacks a feature the tables use; choose how elements are refreshed."""
        table, needs = self.config.table, self.config.kernel_needs
        try:
            self.kernel = await self.writer.call(lambda nft: probe_kernel(nft, ElementSocket(), table, needs))
        except KernelUnsupported as error:
            raise StartupError(str(error)) from error
        except Exception as error:
            raise StartupError(f"cannot probe the kernel's nf_tables: {error}") from error
        chosen = self.config.element_refresh
        if chosen != "auto" and chosen != self.kernel.refresh:
            if chosen == Refresh.UPDATE:
                raise StartupError(
                    f"--element-refresh update: kernel {self.kernel.release} ignores element updates "
                    "(Linux 6.10+); use auto or replace"
                )
            self.kernel = KernelReport(self.kernel.release, Refresh(chosen))
        self.writer.refresh = self.kernel.refresh

    def _raise_open_file_limit(self) -> None:
        """Every TCP client holds a descriptor: with a soft limit of 1,024 (a common default) the
        process would run out before its connection cap. Raised up to the hard limit, never lowered."""
        needed = len(self.config.listen) * self.config.tcp_limits.max_connections + FILE_MARGIN
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            if target < needed:
                self.log.warning("agent.file_limit_low", soft=target, needed=needed)

    async def _reconcile(self, index: PolicyIndex, previous: PolicyIndex | None = None) -> None:
        rec = self.table.reconcile(index, time.monotonic(), previous)
        commands = ruleset.element_commands(self.config.table, rec.writes, rec.deletes, self.writer.refresh)
        if previous is not None:
            commands = self.tables.change_commands(index, previous, commands)
        await self.writer.write(commands)
        self.table.apply_reconciliation(rec)
        if rec.writes or rec.deletes:
            self.log.info(
                "policy.reconciled", elements_written=len(rec.writes), elements_deleted=len(rec.deletes)
            )

    async def apply(self, policy_set: PolicySet, reason: str) -> bool:
        """Puts a new PolicySet in force: the one path for every source and every kind of change."""
        async with self._reload_lock:
            started = time.monotonic()
            assert self.gate is not None
            previous = self.gate.index
            # Indexing runs in a thread: a large policy set must not stall lookups meanwhile.
            index = await asyncio.to_thread(PolicyIndex, policy_set, previous)
            self.gate.index = index  # answers from now on are decided under the new rules
            await self.writer.write([])  # barrier: writes decided under the old rules are done
            try:
                await self._reconcile(index, previous)
            except Exception as error:
                self.gate.index = previous
                self.log.error(
                    "policy.apply_failed", reason=reason, error=str(error), keeping="last good policy"
                )
                self.health.record_reload("apply_failed")
                return False
            self._log_uncomposed(policy_set)
            self.log.info(
                "policy.loaded",
                reason=reason,
                policies=len(policy_set.policies),
                pods=len(policy_set.pods),
                seconds=round(time.monotonic() - started, 3),
            )
            self.health.record_reload("ok")
            return True

    def _log_uncomposed(self, policy_set: PolicySet) -> None:
        for np in policy_set.network_policies:
            if np.ignored:
                self.log.warning("networkpolicy.not_composed", policy=np.key, ignored=list(np.ignored))

    async def _follow_source(self) -> None:
        while True:
            update = await self.source.next()
            try:
                await self.apply(update.policy_set, update.reason)
            except Exception as error:  # one bad update must not end the following of the source
                self.log.error("policy.apply_failed", reason=update.reason, error=repr(error))
            # What changes meanwhile is folded into the source's state and comes as one next update.
            await asyncio.sleep(self.config.min_apply_interval)

    def _write_failed(self, error: Exception) -> None:
        if self._repairing is None or self._repairing.done():
            self._repairing = asyncio.ensure_future(self.repair(f"write failed: {error}"))

    def _collected_whole(self, result: WholeCollection) -> None:
        self.log.info(
            "gc.whole_collection",
            seconds=round(result.seconds, 4),
            unreachable=result.collected,
            allocated_blocks_before=result.blocks_before,
            allocated_blocks_after=result.blocks_after,
        )

    async def repair(self, reason: str) -> None:
        """Recreate the table and write back everything allowed (someone deleted or flushed it)."""
        self.log.error("enforcer.repairing", reason=reason, table=f"{ruleset.FAMILY} {self.config.table}")
        try:
            refresh = self.writer.refresh
            await self.writer.call(lambda nft: self.tables.install(nft, self.index, True, refresh))
        except Exception as error:
            self.log.error("enforcer.repair_failed", error=str(error))
            self.health.record_repair(False, time.monotonic())
            return
        self.health.record_repair(True, time.monotonic())
        self.log.info("enforcer.repaired", elements_written=len(self.table))

    async def _watchdog(self) -> None:
        """Notices a deleted or emptied table or chain within a second, even when no lookup fails on it."""
        while True:
            await asyncio.sleep(self.config.watchdog_interval)
            try:
                damage = await self.writer.call(self.tables.damage)
            except Exception as error:  # a failed check must not end the watchdog
                damage = f"check failed: {error}"
            now = time.monotonic()
            self.health.record_table_check(damage is None, now)
            self.health.record_upstream(self.forwarder.stats.answered, self.forwarder.stats.timeouts, now)
            if damage and (self._repairing is None or self._repairing.done()):
                self._repairing = asyncio.ensure_future(self.repair(damage))
            try:
                await self.redirector.keep()
            except Exception as error:  # retried on the next tick
                self.log.error("dns.redirect_repair_failed", error=str(error))

    async def _flush_logs(self) -> None:
        """Decision lines are written to a buffer; a crash loses at most this interval of them."""
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            now = time.monotonic()
            self.decision_log.report_folded(now)
            if self.gate is not None:
                self.gate.report_budget(now)
            if self.decision_log.close_window_if_due(now):
                # A closed window's repeats go out in slices, with answers in between.
                while self.decision_log.write_closed(REPEAT_LINES_PER_SLICE):
                    await asyncio.sleep(0)
            self.decision_log.flush()

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
            now = time.monotonic()
            while True:
                forgotten = self.table.forget_expired(now, EXPIRY_SWEEP_LIMIT)
                if self.drops is not None:  # a later drop can still say which name expired
                    self.names.record_expired(forgotten.resolutions, now)
                if not forgotten.more:
                    break
                await asyncio.sleep(0)  # a mass expiry goes in slices, with answers in between

    def log_stats(self) -> None:
        """One `agent.stats` line (on SIGUSR1, as dnsmasq does, and at stop): the gate's hold-time
        histogram, cumulative since start, so two lines give the exact histogram of the time between."""
        if self.gate is not None:
            self.log.info(
                "agent.stats",
                hold_time=self.gate.hold_summary(),
                nft_call_time=histogram_summary(self.nft_latency),
                gc_pauses={
                    **histogram_summary(self.collector_pauses.histogram),
                    "by_generation": list(self.collector_pauses.by_generation),
                    "longest_ms": round(self.collector_pauses.longest * 1000, 3),
                },
                elements=len(self.table),
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ops in self.ops:
            # First: during a rolling update the new agent shares the port (SO_REUSEPORT), and probes
            # and scrapes should reach it, not this one while it drains.
            await ops.stop()
        # New queries go to the cluster DNS from now on (unless a newer agent owns the redirect);
        # the ones already sent here are still answered below.
        try:
            await self.redirector.remove()
        except Exception as error:
            self.log.error("dns.redirect_remove_failed", error=str(error))
        if self.drops is not None:
            self.drops.stop()  # frees the NFLOG group at once for the agent that replaces this one
        # Stop reading first and answer what was already read, then close: a query that was read is
        # never dropped, and one still queued in the closing socket is retried by its client and, with
        # SO_REUSEPORT, lands on the agent that replaces this one.
        for server in self.servers:
            server.pause()
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.forwarder.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await self.writer.write([])
        for server in self.servers:
            await server.stop()
        self.forwarder.close()
        await self.source.close()
        self.decision_log.flush_repeats(time.monotonic())
        self.decision_log.report_folded(time.monotonic(), force=True)
        self.decision_log.flush()
        self.log_stats()
        self.collector_pauses.uninstall()
        if self.collector is not None:
            self.collector.uninstall()
        self.log.info("agent.stopped", table_kept=f"{ruleset.FAMILY} {self.config.table}")

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.source.reload("SIGHUP"))
        loop.add_signal_handler(signal.SIGUSR1, self.log_stats)
        # A Kubernetes source waits at start for the API server: a SIGTERM meanwhile ends the wait.
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            if self.servers:  # cancelled late in start: undo what it did as a normal stop would
                await self.stop()
                return
            await self.source.close()
            self.log.info("agent.stopped", before="ready")
            return
        stopping.cancel()
        try:
            starting.result()
        except BaseException:
            await self.source.close()
            raise
        await self._stopping.wait()
        await self.stop()


def node_addresses() -> list[str]:
    """This network namespace's own addresses, for the rebinding guard (answers never allow them)."""
    try:
        out = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=5, check=True
        )
        return [a["local"] for link in json.loads(out.stdout) for a in link.get("addr_info", [])]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return []
