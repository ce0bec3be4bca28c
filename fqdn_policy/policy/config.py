"""The decision core's configuration: TTL arithmetic, entry budgets, and what answers may never allow."""

from __future__ import annotations

from dataclasses import dataclass, field

from fqdn_policy.policy.state.allowtable import DEFAULT_MAX_ADDRESSES_PER_NAME
from fqdn_policy.policy.state.budget import EntryBudget
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.settings import network, setting, validate, whole, whole_at_least


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    ttl: TTLPolicy = field(default_factory=TTLPolicy)
    max_addresses_per_name: int = setting(
        DEFAULT_MAX_ADDRESSES_PER_NAME,
        "--max-addresses-per-name",
        "addresses kept per pod and name; the oldest are dropped beyond it (logged)",
        parse=whole,
        check=whole_at_least(1),
    )
    budget: EntryBudget = field(default_factory=EntryBudget)
    protected: tuple[str, ...] = setting(
        (),
        "--protect",
        "range answers may point at but never gets allowed, besides loopback, link-local "
        "and the node's own addresses (repeatable)",
        parse=network,
        repeat=True,
    )

    def __post_init__(self) -> None:
        validate(self)
