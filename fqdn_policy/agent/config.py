"""The agent's configuration: each component's own, composed, and what only the running agent uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from fqdn_policy.agent.eventloop import EventLoop
from fqdn_policy.agent.redirect import plan
from fqdn_policy.dnsproxy.server import ServeConfig
from fqdn_policy.dnsproxy.upstream import UpstreamConfig
from fqdn_policy.enforcer.config import EnforcerConfig
from fqdn_policy.ops.config import OpsConfig
from fqdn_policy.policy.config import PolicyConfig
from fqdn_policy.settings import (
    SettingError,
    number,
    positive_seconds,
    setting,
    validate,
    whole,
    whole_at_least,
)

# Allocations between young collections. With survivors frozen (agent.collector) there is no middle
# generation to feed, so shorter, more frequent pauses cost no throughput: 5,000 against 20,000 in
# bench.ab, 7 rounds each, added p99 at 2,000 qps median 1.62 against 2.33 ms (docs/benchmarks.md).
GC_THRESHOLD = 5_000
MIN_APPLY_INTERVAL = 0.1  # seconds between two applied policy updates: a burst of changes is one


@dataclass(frozen=True, slots=True)
class AgentConfig:
    upstream: UpstreamConfig
    serve: ServeConfig = field(default_factory=ServeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    enforcer: EnforcerConfig = field(default_factory=EnforcerConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    watchdog_interval: float = setting(
        1.0,
        "--watchdog-interval",
        "seconds between checks that the nftables table is intact (it is rebuilt if not)",
        parse=number,
        check=positive_seconds,
    )
    gc_young: int = setting(
        GC_THRESHOLD,
        "--gc-young",
        "allocations between two young-generation collections: higher = fewer, longer pauses",
        parse=whole,
        check=whole_at_least(1),
    )
    event_loop: EventLoop = setting(
        EventLoop.ASYNCIO,
        "--event-loop",
        "the event loop: the standard one, or uvloop (opt-in: no measured gain here, and one e2e "
        "test fails intermittently with it; docs/benchmarks.md)",
        parse=EventLoop,
    )
    min_apply_interval: float = MIN_APPLY_INTERVAL

    def __post_init__(self) -> None:
        validate(self)
        try:
            plan(list(self.enforcer.dns_services), list(self.serve.listen))
        except ValueError as error:  # the plan's own refusal: a redirect pods could not follow
            raise SettingError("--dns-service", str(error)) from None
