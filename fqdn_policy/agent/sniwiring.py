"""When the verify-sni datapath is on, and its reader.

On with --verify-sni (the kernel probe then insists on the queue statement at start), or once a policy
in force verifies: at start, or at the reload that brings the first verifying policy, whose
transaction then also installs the check (the same atomic rewrite of the chains a start does). Once on
it stays on until the agent stops: turning it off would let connections already held in the queue be
dropped for nothing. Where the kernel cannot queue and only annotations asked for it, the datapath is
installed without the queue, so verified destinations stay closed (fail closed), and the agent says so.
"""

from __future__ import annotations

from fqdn_policy.agent.snicheck import SniChecker, SniPolicy
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.config import EnforcerConfig
from fqdn_policy.enforcer.kernelprobe import sni_queue_missing
from fqdn_policy.enforcer.tables import EnforcerTables
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.logs import get
from fqdn_policy.policy.match.ruleindex import PolicyIndex


class SniDatapath:
    def __init__(self, config: EnforcerConfig, tables: EnforcerTables, writer: SetWriter) -> None:
        self.config = config
        self.tables = tables
        self.writer = writer
        self.checker: SniChecker | None = None
        self.log = get("fqdn_policy.sni")

    @property
    def state(self) -> str:
        """For agent.ready: off, on (queue N), or fail-closed (no queue)."""
        if not self.tables.verify_sni:
            return "off"
        return f"queue {self.tables.sni_queue}" if self.tables.sni_queue is not None else "fail-closed"

    async def turn_on_if_needed(self, index: PolicyIndex) -> bool:
        """Whether this call turned the datapath on (the caller then installs the tables again)."""
        if self.tables.verify_sni or not index.verifies_sni():
            return False
        if not self.config.verify_sni:
            missing = await self.writer.call(lambda nft: sni_queue_missing(nft, self.config.table))
            if missing is not None:
                self.tables.sni_queue = None
                self.log.error(
                    "sni.unavailable",
                    detail="a policy asks for verify-sni but this kernel cannot queue packets: its "
                    "verified destinations stay closed",
                    missing=missing,
                )
        self.tables.verify_sni = True
        return True

    async def follow(self, index: PolicyIndex, policy: SniPolicy) -> None:
        """At a reload: the first verifying policy installs the check and starts the reader."""
        if await self.turn_on_if_needed(index):
            refresh = self.writer.refresh
            await self.writer.call(lambda nft: self.tables.install(nft, index, refresh=refresh))
            self.start_reader(policy)
            self.log.info("sni.datapath_on", state=self.state, reason="a verifying policy is in force")

    def start_reader(self, policy: SniPolicy) -> None:
        if self.checker is not None or not self.tables.verify_sni or self.tables.sni_queue is None:
            return
        self.checker = SniChecker(self.tables.sni_queue, policy, audit=self.config.mode is ruleset.Mode.AUDIT)
        self.checker.start()

    def stop(self) -> None:
        if self.checker is not None:
            self.checker.stop()
