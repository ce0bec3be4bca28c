"""The interface between the agent and where its policy comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fqdn_policy.policy.model import PolicySet


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    policy_set: PolicySet
    reason: str  # for the policy.loaded log line: "file changed", "SIGHUP", "kubernetes: pods", ...


class SourceRefused(Exception):
    """The source cannot give a first PolicySet (a bad file): the agent does not start."""


class SourceConfigError(Exception):
    """The source cannot be set up as configured (no NODE_NAME, an unreadable kubeconfig): a usage error."""


class PolicySource(Protocol):
    """Produces PolicySets; the agent applies each through the same reload path.

    `first()` is awaited once at start, before the agent touches the kernel. `next()` is awaited in a
    loop afterwards: it returns when there is something new, and whatever changed while the agent was
    applying the previous update comes back as one update (a source keeps state, not a queue).
    Refusals of bad input are the source's to log; `next()` returns only sets worth applying.
    """

    description: str  # where the policy comes from, for logs
    refused: int  # inputs refused so far (files, objects): the reloads{result="refused"} metric

    async def first(self) -> PolicySet: ...

    async def next(self) -> PolicyUpdate: ...

    def reload(self, reason: str) -> None:
        """Read the source again now (SIGHUP)."""
        ...

    async def close(self) -> None: ...
