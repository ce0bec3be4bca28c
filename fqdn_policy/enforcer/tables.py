"""The agent's nftables tables as a whole: create or adopt them, turn a policy change into commands,
and say whether they are intact.

The main table enforces; the guard table (enforcer.guard) keeps selected pods closed if the main one is
deleted or flushed. Both hold the enforced and exempt sets, written in the same transactions. Every
kernel call goes through the Nft handed in, which is the SetWriter's, so nothing here races a write.
"""

from __future__ import annotations

import time

from fqdn_policy.enforcer import guard, ruleset
from fqdn_policy.enforcer.config import EnforcerConfig
from fqdn_policy.enforcer.inventory import allow_elements
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable


class EnforcerTables:
    def __init__(self, config: EnforcerConfig, allowed: AllowTable) -> None:
        self.config = config
        self.allowed = allowed
        self._guard_drops = 0  # the guard's drop counter when last read; growth means main is damaged
        # The verify-sni datapath (fqdn_policy.enforcer.sniruleset): on with --verify-sni or once a
        # verifying policy is in force, and then kept; `sni_queue` None where the kernel cannot queue
        # (the check then drops: fail closed).
        self.verify_sni = config.verify_sni
        self.sni_queue: int | None = config.sni_queue

    @property
    def guard_table(self) -> str | None:
        return self.config.guard_table

    def enforcing_tables(self) -> list[str]:
        """Tables holding a copy of the enforced and exempt sets: the main one and the guard."""
        return [self.config.table, *([self.guard_table] if self.guard_table else [])]

    def reject_ips(self, index: PolicyIndex, version: int) -> frozenset[str]:
        return index.enforced_ips(version) if self.config.reject else index.reject_ips(version)

    def rejects(self, index: PolicyIndex, ip: str) -> bool:
        """Whether the pod with this address gets a fast failure (for the drop line's `verdict`)."""
        client = index.client(ip)
        if client is None or client.rules is None:
            return False
        return self.config.reject or any(p.rejects for p in client.rules.policies)

    def unlogged_packets(self, nft: Nft) -> int:
        """Denied packets beyond the drop-log rate: denied and counted by the kernel, not logged."""
        return nft.counter(self.config.table, ruleset.UNLOGGED_COUNTER)

    def install(
        self, nft: Nft, index: PolicyIndex, rewrite: bool = False, refresh: Refresh = Refresh.UPDATE
    ) -> None:
        """Create or adopt both tables, all in one transaction, then take over the kernel's elements.

        With `rewrite`, every element the agent knows is written back in the same transaction (as
        `refresh` says, since some may still be there): the repair after someone deleted the table or
        a set.
        """
        table = self.config.table
        mark = self.config.guard_mark if self.guard_table else 0
        enforced = sorted(index.enforced_ips(4) | index.enforced_ips(6))
        rejected = sorted(self.reject_ips(index, 4) | self.reject_ips(index, 6))
        commands = ruleset.base_ruleset(table, self.config.denial, mark, self.verify_sni, self.sni_queue)
        if self.guard_table:
            commands += guard.guard_ruleset(self.guard_table, mark)
        elif nft.table_exists(guard.guard_table(table)):
            # Started without a guard after a run with one: its drops would now catch everything.
            commands += ruleset.delete_table(guard.guard_table(table))
        commands += [
            {"flush": {"set": {"family": ruleset.FAMILY, "table": table, "name": f"reject_v{v}"}}}
            for v in (4, 6)
        ]
        commands += ruleset.reject_commands(table, rejected, [])
        for name in self.enforcing_tables():
            commands += [
                {"flush": {"set": {"family": ruleset.FAMILY, "table": name, "name": f"enforced_v{v}"}}}
                for v in (4, 6)
            ]
            commands += ruleset.enforced_commands(name, enforced, [])
            commands += ruleset.exempt_commands(name, self.config.exempt)
        commands += ruleset.ipblock_commands(table, index.ipblock_elements())
        now = time.monotonic()
        if rewrite:
            commands += ruleset.element_commands(table, self.allowed.live_writes(now), refresh=refresh)
        nft.run(commands)
        if self.guard_table:
            self._guard_drops = self._guard_counter(nft)
        for listed in allow_elements(nft, table):
            client = index.client(listed.pod_ip)
            self.allowed.adopt(
                listed.element, now + listed.expires, listed.name, client.pod.key if client else None
            )

    def change_commands(
        self, index: PolicyIndex, previous: PolicyIndex, element_commands: list[ruleset.Command]
    ) -> list[ruleset.Command]:
        """One transaction for a policy change: who is enforced or rejected, the allow elements, the
        NetworkPolicy ipBlocks. Pure: the two indexes in, commands out."""
        add: set[str] = set()
        remove: set[str] = set()
        add_reject: set[str] = set()
        remove_reject: set[str] = set()
        for v in (4, 6):
            new, old = index.enforced_ips(v), previous.enforced_ips(v)
            add |= new - old
            remove |= old - new
            new, old = self.reject_ips(index, v), self.reject_ips(previous, v)
            add_reject |= new - old
            remove_reject |= old - new
        commands = [
            c
            for name in self.enforcing_tables()
            for c in ruleset.enforced_commands(name, sorted(add), sorted(remove))
        ]
        commands += element_commands
        commands += ruleset.reject_commands(self.config.table, sorted(add_reject), sorted(remove_reject))
        ipblocks = index.ipblock_elements()
        if ipblocks != previous.ipblock_elements():
            commands += ruleset.ipblock_commands(self.config.table, ipblocks)
        return commands

    def damage(self, nft: Nft) -> str | None:
        """What is wrong with the tables, or None. Cheap enough to run every second at any table size."""
        if not nft.chains(self.config.table) >= set(ruleset.CHAINS):
            return "table or chain missing"
        if self.guard_table is None:
            return None
        if not nft.chains(self.guard_table) >= guard.GUARD_CHAINS:
            return "guard table or chain missing"
        dropped = self._guard_counter(nft)
        grew, self._guard_drops = dropped > self._guard_drops, dropped
        if grew:
            # The guard drops only packets the main table did not judge: a flushed chain or set.
            return "guard dropped packets the main table did not judge"
        return None

    def _guard_counter(self, nft: Nft) -> int:
        assert self.guard_table is not None
        try:
            return nft.counter(self.guard_table, guard.DROP_COUNTER)
        except NftError:
            return 0  # being rebuilt; the next check reads it
