"""The operator surface's configuration: the HTTP listeners and the decision log."""

from __future__ import annotations

from dataclasses import dataclass, field

from fqdn_policy.ops.decisionlog import DEFAULT_LINE_RATE, DEFAULT_WINDOW, LogMode
from fqdn_policy.settings import address_or_off, finite_at_least, number, positive_seconds, setting, validate

DEFAULT_METRICS = ("127.0.0.1", 9153)


@dataclass(frozen=True, slots=True)
class DecisionLogConfig:
    mode: LogMode = setting(
        LogMode.CHANGES,
        "--log-decisions",
        "all: a line per lookup; changes: a line per kernel write or failure and per new "
        "(pod, name, outcome) in a window, repeats counted in a dns.repeated line; none: failures only",
        parse=LogMode,
    )
    window: float = setting(
        DEFAULT_WINDOW,
        "--log-window",
        "seconds over which repeats are counted",
        parse=number,
        check=positive_seconds,
    )
    rate: float = setting(
        DEFAULT_LINE_RATE,
        "--log-rate",
        "decision lines per second per pod (bursts of twice that); beyond it lines are folded: "
        "counted in dns.decisions_folded lines every 10 s and on /metrics; 0 = no limit",
        parse=number,
        check=finite_at_least(0, "lines per second (0 = no limit)"),
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class OpsConfig:
    metrics: tuple[str, int] | None = setting(
        DEFAULT_METRICS,
        "--metrics",
        "where to serve /metrics, /healthz, /readyz, /state and /explain over HTTP (docs/operations.md)",
        parse=address_or_off,
        metavar="IP:PORT|off",
        shown=f"{DEFAULT_METRICS[0]}:{DEFAULT_METRICS[1]}",
    )
    public_metrics: tuple[str, int] | None = setting(
        None,
        "--public-metrics",
        "a second listener serving only /metrics, for a Prometheus on another host (the node's "
        "address in a DaemonSet); /state and /explain stay on --metrics (docs/operations.md)",
        parse=address_or_off,
        metavar="IP:PORT|off",
        shown="off",
    )
    log: DecisionLogConfig = field(default_factory=DecisionLogConfig)

    def __post_init__(self) -> None:
        validate(self)
