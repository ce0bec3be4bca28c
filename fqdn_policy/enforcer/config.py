"""The enforcer's configuration: the tables it owns and what its chains do with what no set allows."""

from __future__ import annotations

from dataclasses import dataclass

from fqdn_policy.enforcer import guard, ruleset, sniruleset
from fqdn_policy.enforcer.dnsredirect import DEFAULT_DNS_TABLE
from fqdn_policy.enforcer.kernelfeatures import Needs
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.settings import SettingError, host_port, network, setting, validate, whole, whole_at_least

REFRESH_CHOICES = ("auto", *(r.value for r in Refresh))


def _nflog_group(text: str) -> int | None:
    return None if text == "off" else whole(text)


def _check_nflog_group(group: int | None) -> str | None:
    ok = group is None or 0 <= group <= 65535
    return None if ok else "is not a group number 0-65535 or 'off'"


def _check_mark(mark: int) -> str | None:
    try:
        guard.validate_mark(mark)
    except ValueError as error:
        return f"is refused: {error}"
    return None


def _check_refresh(value: str) -> str | None:
    return None if value in REFRESH_CHOICES else f"is not one of: {', '.join(REFRESH_CHOICES)}"


@dataclass(frozen=True, slots=True)
class EnforcerConfig:
    table: str = setting(ruleset.DEFAULT_TABLE, "--table", "name of the inet table this agent owns")
    exempt: tuple[str, ...] = setting(
        (),
        "--exempt",
        "destination range never enforced, e.g. the cluster's pod and service ranges (repeatable)",
        parse=network,
        repeat=True,
    )
    mode: ruleset.Mode = setting(
        ruleset.Mode.ENFORCE,
        "--mode",
        "enforce: deny what no rule allows; audit: decide, write and log everything, but accept "
        "denied connections and log each as egress.would_drop (docs/drops.md)",
        parse=ruleset.Mode,
    )
    reject: bool = setting(
        False,
        "--reject",
        "deny with a fast failure (TCP reset, ICMP administratively prohibited) instead of a "
        "silent drop, for every pod; per policy: annotation fqdn.policy.dev/on-deny: reject",
        switch=True,
    )
    nflog_group: int | None = setting(
        ruleset.DEFAULT_NFLOG_GROUP,
        "--nflog-group",
        "NFLOG group the deny rules log to and the agent reads (egress.dropped lines); 'off' = none",
        parse=_nflog_group,
        check=_check_nflog_group,
    )
    drop_log_rate: int = setting(
        ruleset.DEFAULT_LOG_RATE,
        "--drop-log-rate",
        "denied packets logged per second (bursts of twice that); beyond it they are denied "
        "and counted (egress.unlogged), not logged",
        parse=whole,
        check=whole_at_least(1),
    )
    guard_mark: int = setting(
        guard.DEFAULT_GUARD_MARK,
        "--guard-mark",
        "packet-mark bit the main table sets and the guard table checks, so enforced pods stay "
        "closed if the main table is deleted; must be a bit no other component sets "
        "(docs/failure-modes.md); 0 = no guard table",
        parse=lambda text: int(text, 0),
        check=_check_mark,
    )
    element_refresh: str = setting(
        "auto",
        "--element-refresh",
        "how an allowed element gets a later timeout: auto (probed at start: in-place update on "
        "Linux 6.10+, else replace = delete and add in one transaction), or insist on one "
        "(docs/kernels.md)",
        check=_check_refresh,
        metavar="{" + ",".join(REFRESH_CHOICES) + "}",
    )
    # Cluster DNS service addresses whose port-53 traffic from pods is DNATed to the first --listen
    # address of the same family, in table `dns_table` (Kubernetes mode; see docs/kubernetes.md).
    dns_services: tuple[tuple[str, int], ...] = setting(
        (),
        "--dns-service",
        "cluster DNS service address (IP or IP:PORT, repeatable): pods' UDP and TCP DNS to it is "
        "DNATed to the first --listen address of its family while the agent runs (docs/kubernetes.md)",
        parse=host_port,
        repeat=True,
    )
    dns_table: str = setting(
        DEFAULT_DNS_TABLE,
        "--dns-table",
        "name of the inet table holding the DNS redirect (removed when the agent stops)",
    )

    verify_sni: bool = setting(
        False,
        "--verify-sni",
        "verify TLS SNI (HTTP Host on port 80) on new TCP connections of every enforced pod, as the "
        "annotation fqdn.policy.dev/verify-sni does per policy; refuses to start without the kernel's "
        "nft queue (docs/sni.md)",
        switch=True,
    )
    sni_queue: int = setting(
        sniruleset.DEFAULT_QUEUE,
        "--sni-queue",
        "NFQUEUE queue number the verify-sni check sends first packets to, and the NFLOG group it "
        "copies SYNs to (one reader per node; not the --nflog-group)",
        parse=whole,
        check=lambda q: None if 0 <= q <= 65535 else "is not a queue number 0-65535",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.sni_queue == self.nflog_group:
            problem = f"{self.sni_queue} is also the --nflog-group: one reader per group"
            raise SettingError("--sni-queue", problem)

    @property
    def denial(self) -> ruleset.Denial:
        return ruleset.Denial(self.mode, self.nflog_group, self.drop_log_rate)

    @property
    def guard_table(self) -> str | None:
        """None without a mark, and in audit mode: audit promises to break no traffic, and with nothing
        enforced there is nothing to keep closed (a guard would turn a deleted table into an outage)."""
        if not self.guard_mark or self.mode is ruleset.Mode.AUDIT:
            return None
        return guard.guard_table(self.table)

    @property
    def kernel_needs(self) -> Needs:
        return Needs(
            # the verify-sni denial resets even in audit mode's ruleset (the agent then never denies)
            reject=self.mode is ruleset.Mode.ENFORCE or self.verify_sni,
            nflog=self.nflog_group is not None or self.verify_sni,  # verify-sni copies SYNs to NFLOG
            guard_mark=bool(self.guard_mark) and self.mode is ruleset.Mode.ENFORCE,
            dns_redirect=bool(self.dns_services),
            sni_queue=self.verify_sni,
        )
