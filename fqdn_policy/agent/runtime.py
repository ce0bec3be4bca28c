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
import signal
import time

from fqdn_policy.agent.collector import CollectorRegime
from fqdn_policy.agent.config import AgentConfig
from fqdn_policy.agent.drops import DropReporter
from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.agent.hostlimits import node_addresses, raise_open_file_limit
from fqdn_policy.agent.housekeeping import flush_logs, log_whole_collection, stats_line, sweep_expired
from fqdn_policy.agent.opswiring import ops_routes
from fqdn_policy.agent.redirect import DnsRedirector, plan
from fqdn_policy.agent.sniwiring import SniDatapath
from fqdn_policy.dnsproxy.server import DnsServer, Resolver
from fqdn_policy.dnsproxy.upstream import Forwarder
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.elementsocket import ElementSocket
from fqdn_policy.enforcer.kernelprobe import KernelReport, KernelUnsupported, probe_kernel
from fqdn_policy.enforcer.tables import EnforcerTables
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.logs import get
from fqdn_policy.ops.collectorpauses import CollectorPauses
from fqdn_policy.ops.decisionlog import DecisionLog
from fqdn_policy.ops.health import Health
from fqdn_policy.ops.histogram import Histogram
from fqdn_policy.ops.httpserve import HttpServer
from fqdn_policy.ops.opsapi import public_routes
from fqdn_policy.policy.diagnose.dropattribution import NameMemory
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.model import PolicySet
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.reconcile import reconcile
from fqdn_policy.sources.base import PolicySource, SourceRefused

DRAIN_SECONDS = 3.0
# How long the first answer of a burst may be held while later ones are decided before their writes
# go in one transaction (fqdn_policy.enforcer.writer); a cold decision takes ~50 us here (docs/benchmarks.md).
WRITE_BATCH_WAIT = 0.00005


class StartupError(RuntimeError):
    pass


class Agent:
    def __init__(self, config: AgentConfig, source: PolicySource) -> None:
        self.config = config
        self.source = source
        enforcer, policy = config.enforcer, config.policy
        self.log = get("fqdn_policy.agent")
        self.health = Health(watchdog_interval=config.watchdog_interval)
        self.nft_latency = Histogram()
        self.upstream_latency = Histogram()
        self.collector_pauses = CollectorPauses()
        self.collector: CollectorRegime | None = None
        self.writer = SetWriter(on_latency=self.nft_latency.observe, max_wait=WRITE_BATCH_WAIT)
        self.table = AllowTable(policy.ttl, policy.max_addresses_per_name, policy.budget)
        self.tables = EnforcerTables(enforcer, self.table)
        self.sni = SniDatapath(enforcer, self.tables, self.writer)
        self.forwarder = Forwarder(
            config.upstream, on_latency=self.upstream_latency.observe, after_answers=self.writer.flush
        )
        log = config.ops.log
        self.decision_log = DecisionLog(mode=log.mode, window=log.window, rate=log.rate)
        self.gate: PolicyGate | None = None
        self.resolver: Resolver | None = None
        self.servers: list[DnsServer] = []
        self.ops: list[HttpServer] = []  # the --metrics listener, then --public-metrics
        self._reload_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._repairing: asyncio.Task[None] | None = None
        listen = list(config.serve.listen)
        self.redirector = DnsRedirector(
            self.writer, enforcer.dns_table, plan(list(enforcer.dns_services), listen)
        )
        # What pods resolved that the AllowTable does not hold (denied names, expired allowances).
        self.names = NameMemory()
        self.drops: DropReporter | None = None
        # What the start-up probe found (fqdn_policy.enforcer.kernelprobe).
        self.kernel: KernelReport | None = None

    @property
    def index(self) -> PolicyIndex:
        assert self.gate is not None
        return self.gate.index

    async def start(self) -> None:
        await self._serve_ops()  # first, so /healthz answers and /readyz says "starting" meanwhile
        try:
            policy_set = await self.source.first()
        except SourceRefused as error:
            raise StartupError(str(error)) from error
        index = PolicyIndex(policy_set, verify_all=self.config.enforcer.verify_sni)
        self.gate = PolicyGate(
            index,
            self.table,
            AddressGuard(self.config.policy.protected, node_addresses()),
            self.writer,
            self.config.enforcer.table,
            on_write_failure=self._write_failed,
            decision_log=self.decision_log,
            names=self.names,
        )
        await self._program_tables(index)
        self._log_uncomposed(policy_set)
        await self._start_drops()
        self.sni.start_reader(self.gate)
        await self._serve_dns()
        try:
            await self.redirector.install()  # only now: something listens where it points
        except Exception as error:
            raise StartupError(
                f"cannot program the DNS redirect table {self.config.enforcer.dns_table!r}: {error}"
            ) from error
        self._tasks = [
            asyncio.create_task(self._follow_source()),
            asyncio.create_task(sweep_expired(self.table, self.names, lambda: self.drops is not None)),
            asyncio.create_task(self._watchdog()),
            asyncio.create_task(flush_logs(self.decision_log, lambda: self.gate)),
        ]
        # What lives now (the policy index, the adopted elements) is frozen, and so is whatever later
        # survives a young collection: see fqdn_policy.agent.collector.
        self.collector = CollectorRegime(
            self.config.gc_young,
            asyncio.get_running_loop().call_soon_threadsafe,
            lambda result: log_whole_collection(self.log, result),
        )
        self.collector.install()
        self.collector_pauses.install()
        self.health.record_start(time.monotonic())
        self._log_ready(policy_set, index)

    async def _serve_ops(self) -> None:
        local = ops_routes(self)
        ops = self.config.ops
        for what, address, table in (
            ("metrics", ops.metrics, local),
            ("--public-metrics", ops.public_metrics, public_routes(local)),
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

    async def _program_tables(self, index: PolicyIndex) -> None:
        await self._probe_kernel()
        await self.sni.turn_on_if_needed(index)
        try:
            await self.writer.call(lambda nft: self.tables.install(nft, index, refresh=self.writer.refresh))
        except Exception as error:
            raise StartupError(
                f"cannot program nftables table {self.config.enforcer.table!r}: {error}"
            ) from error
        await self._reconcile(index)

    async def _start_drops(self) -> None:
        enforcer = self.config.enforcer
        if enforcer.nflog_group is None:
            return
        self.drops = DropReporter(enforcer.nflog_group, self.gate, self.tables, self.writer)  # type: ignore[arg-type]
        await self.drops.start()

    async def _serve_dns(self) -> None:
        await self.forwarder.start()
        serve = self.config.serve
        resolver = self.resolver = Resolver(self.forwarder, self.gate, serve.limiter())  # type: ignore[arg-type]
        short = raise_open_file_limit(len(serve.listen), serve.tcp.max_connections)
        if short is not None:
            self.log.warning("agent.file_limit_low", soft=short[0], needed=short[1])
        for host, port in serve.listen:
            server = DnsServer(resolver, host, port, serve.tcp)
            await server.start()
            self.servers.append(server)

    def _log_ready(self, policy_set: PolicySet, index: PolicyIndex) -> None:
        enforcer = self.config.enforcer
        self.log.info(
            "agent.ready",
            source=self.source.description,
            listen=[f"{h}:{p}" for h, p in self.config.serve.listen],
            upstreams=[str(u) for u in self.forwarder.upstreams],
            policies=len(policy_set.policies),
            pods=len(policy_set.pods),
            enforced_pods=index.enforced_pods(),
            adopted_elements=len(self.table),
            table=f"{ruleset.FAMILY} {enforcer.table}",
            mode=enforcer.mode.value,
            reject="all pods" if enforcer.reject else "pods of policies annotated on-deny: reject",
            nflog_group=enforcer.nflog_group,
            kernel=self.kernel.release if self.kernel else None,
            element_refresh=self.writer.refresh.value,
            verify_sni=self.sni.state,
        )

    async def _probe_kernel(self) -> None:
        """Refuse a kernel that lacks a feature the tables use; choose how elements are refreshed."""
        enforcer = self.config.enforcer
        table, needs = enforcer.table, enforcer.kernel_needs
        try:
            found = await self.writer.call(lambda nft: probe_kernel(nft, ElementSocket(), table, needs))
            self.kernel = found.insisting_on(enforcer.element_refresh)
        except KernelUnsupported as error:
            raise StartupError(str(error)) from error
        except Exception as error:
            raise StartupError(f"cannot probe the kernel's nf_tables: {error}") from error
        self.writer.refresh = self.kernel.refresh

    async def _reconcile(self, index: PolicyIndex, previous: PolicyIndex | None = None) -> None:
        rec = reconcile(self.table, index, time.monotonic(), previous)
        commands = ruleset.element_commands(
            self.config.enforcer.table, rec.writes, rec.deletes, self.writer.refresh
        )
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
            started, enforcer = time.monotonic(), self.config.enforcer
            assert self.gate is not None
            previous = self.gate.index
            # Indexing runs in a thread: a large policy set must not stall lookups meanwhile.
            index = await asyncio.to_thread(PolicyIndex, policy_set, previous, enforcer.verify_sni)
            self.gate.index = index  # answers from now on are decided under the new rules
            await self.writer.write([])  # barrier: writes decided under the old rules are done
            try:
                await self.sni.follow(index, self.gate)
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

    async def repair(self, reason: str) -> None:
        """Recreate the table and write back everything allowed (someone deleted or flushed it)."""
        self.log.error(
            "enforcer.repairing", reason=reason, table=f"{ruleset.FAMILY} {self.config.enforcer.table}"
        )
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

    def log_stats(self) -> None:
        """One `agent.stats` line (on SIGUSR1, as dnsmasq does, and at stop): see agent.housekeeping."""
        if self.gate is not None:
            self.log.info(
                "agent.stats", **stats_line(self.gate, self.nft_latency, self.collector_pauses, self.table)
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
        self.sni.stop()  # and the queue
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
        self.log.info("agent.stopped", table_kept=f"{ruleset.FAMILY} {self.config.enforcer.table}")

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
