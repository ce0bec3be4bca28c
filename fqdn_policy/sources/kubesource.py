"""Kubernetes mode's policy source: FQDNNetworkPolicies in all namespaces, the Pods on this node, and
(for the ipBlock composition) NetworkPolicies, listed and watched through the API server.

One Reflector thread per resource does the HTTP; its messages arrive on the event loop through
`call_soon_threadsafe` and are folded into a ClusterState there, so the state is only ever touched by
the loop and needs no lock. `next()` hands out a snapshot whenever the state changed since the last
one; the agent applies at most one per `AgentConfig.min_apply_interval` (0.1 s), so a relist of a
thousand objects, or a burst of events, costs one reconcile.

Reachability is logged per resource on change only (kubernetes.watch_failing once when a watch starts
failing, kubernetes.watch_recovered once when it works again), never per retry. While it fails nothing
is dropped from the state: the agent keeps enforcing what it last knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from fqdn_policy.logs import get
from fqdn_policy.policy.model import Policy, PolicySet
from fqdn_policy.policy.spec.breadth import policy_warnings
from fqdn_policy.policy.spec.schemacheck import format_path
from fqdn_policy.sources.backoff import Backoff
from fqdn_policy.sources.base import PolicyUpdate
from fqdn_policy.sources.clusterstate import ClusterState, Fold
from fqdn_policy.sources.decode import DECODERS, NETWORK_POLICIES, POLICIES, Entry
from fqdn_policy.sources.events import NOT_COMPOSED, REFUSED, Notice
from fqdn_policy.sources.reflector import (
    WATCH_SECONDS,
    Changed,
    Expired,
    ListCall,
    Listed,
    Message,
    Reachable,
    Reflector,
    Unreachable,
)

BackoffFactory = Callable[[], Backoff]
# Takes what deserves a Kubernetes Event (fqdn_policy.sources.eventsink.EventRecorder.record), on the loop.
NoticeSink = Callable[[Notice], None]


class KubernetesSource:
    def __init__(
        self,
        list_calls: dict[str, ListCall],
        description: str = "kubernetes",
        backoff: BackoffFactory = Backoff,
        watch_seconds: int = WATCH_SECONDS,
        notices: NoticeSink | None = None,
        close_notices: Callable[[], None] | None = None,
    ) -> None:
        self.description = description
        self._notices = notices
        self._close_notices = close_notices
        self.refused = 0
        self.log: Any = get("fqdn_policy.kubernetes")
        self.state = ClusterState(list_calls)
        self._list_calls = list_calls
        self._backoff = backoff
        self._watch_seconds = watch_seconds
        self._reflectors: list[Reflector] = []
        self._changed = asyncio.Event()
        self._listed = asyncio.Event()
        self._changed_resources: set[str] = set()
        self._down_since: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._last_error: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def failing(self) -> frozenset[str]:
        """The resources whose watch is failing right now (their state is the last known)."""
        return frozenset(self._down_since)

    async def first(self) -> PolicySet:
        """Starts the watches and returns once every resource was listed (waits while the server is
        unreachable: until then the table a previous agent left is kept as it is)."""
        self._loop = asyncio.get_running_loop()
        for resource, call in self._list_calls.items():
            reflector = Reflector(
                resource, call, DECODERS[resource], self._post, self._backoff(), self._watch_seconds
            )
            self._reflectors.append(reflector)
            reflector.start()
        started = time.monotonic()
        while not self.state.synced:
            self._listed.clear()
            await self._listed.wait()
        self._changed.clear()
        self._changed_resources.clear()
        self.log.info(
            "kubernetes.synced",
            objects={name: len(store.objects) for name, store in self.state.stores.items()},
            seconds=round(time.monotonic() - started, 3),
        )
        return self.state.snapshot()

    async def next(self) -> PolicyUpdate:
        await self._changed.wait()
        self._changed.clear()
        reason = "kubernetes: " + "+".join(sorted(self._changed_resources))
        self._changed_resources.clear()
        return PolicyUpdate(self.state.snapshot(), reason)

    def reload(self, reason: str) -> None:
        self.log.info("kubernetes.relisting", reason=reason)
        for reflector in self._reflectors:
            reflector.relist()

    async def close(self) -> None:
        reflectors, self._reflectors = self._reflectors, []
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in reflectors))
        if self._close_notices is not None:
            await asyncio.to_thread(self._close_notices)

    def _post(self, message: Message) -> None:
        """Called in a reflector thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the agent is gone
            loop.call_soon_threadsafe(self.receive, message)

    def receive(self, message: Message) -> None:
        """Folds one reflector message into the state (on the loop)."""
        if isinstance(message, (Listed, Changed)) and message.resource == POLICIES:
            self._warn_broad(message)
        if isinstance(message, Listed):
            self._notice_uncomposed(message.resource, message.entries)
            self._folded(
                message.resource,
                self.state.replace(message.resource, message.entries, message.resource_version),
                listed=True,
            )
        elif isinstance(message, Changed):
            if message.entry is not None and message.event_type != "DELETED":
                self._notice_uncomposed(message.resource, [message.entry])
            self._folded(
                message.resource,
                self.state.apply(
                    message.resource, message.event_type, message.entry, message.resource_version
                ),
            )
        elif isinstance(message, Reachable):
            self._reachable(message.resource)
        elif isinstance(message, Unreachable):
            self._unreachable(message)
        elif isinstance(message, Expired):
            self.log.info(
                "kubernetes.watch_expired",
                resource=message.resource,
                resource_version=message.resource_version,
                action="relist",
            )

    def _warn_broad(self, message: Listed | Changed) -> None:
        """A policy whose patterns match more than they seem (policy.spec.breadth) is accepted, with one
        line when it is new or changed, not again at every relist."""
        if isinstance(message, Changed) and message.event_type == "DELETED":
            return
        entries = message.entries if isinstance(message, Listed) else [message.entry]
        known = self.state.stores[POLICIES].objects
        for entry in entries:
            if entry is None or not isinstance(entry.value, Policy) or known.get(entry.key) == entry.value:
                continue
            warnings = policy_warnings(entry.value)
            if warnings:
                self.log.warning(
                    "kubernetes.object_warning",
                    resource=POLICIES,
                    object=entry.key,
                    warnings=[f"{format_path(path)}: {text}" for path, text in warnings],
                )

    def _folded(self, resource: str, fold: Fold, listed: bool = False) -> None:
        self.refused += len(fold.rejected)
        for entry in fold.rejected:
            self.log.error(
                "kubernetes.object_refused",
                resource=resource,
                object=entry.key,
                problems=list(entry.problems),
                keeping="the last valid version, if any",
            )
            self._notice(
                entry,
                REFUSED,
                "refused by the fqdn-policy agent, which keeps enforcing the last valid version of this "
                "object, if any: " + "; ".join(entry.problems),
            )
        if fold.changed:
            self._changed_resources.add(resource)
            self._changed.set()
        if listed:
            self._listed.set()

    def _notice_uncomposed(self, resource: str, entries: list[Entry]) -> None:
        if resource != NETWORK_POLICIES:
            return
        for entry in entries:
            ignored = getattr(entry.value, "ignored", ())
            if ignored:
                self._notice(
                    entry,
                    NOT_COMPOSED,
                    "only partly composed by the fqdn-policy agent with FQDNNetworkPolicies (it composes "
                    "ipBlock rules; these parts allow nothing for FQDN-selected pods, so exempt the "
                    "cluster's ranges or let the CNI enforce them): " + "; ".join(ignored),
                )

    def _notice(self, entry: Entry, reason: str, message: str) -> None:
        if self._notices is not None and entry.ref is not None:
            self._notices(Notice(entry.ref, reason, message))

    def _reachable(self, resource: str) -> None:
        down_since = self._down_since.pop(resource, None)
        if down_since is not None:
            self.log.info(
                "kubernetes.watch_recovered",
                resource=resource,
                failed_attempts=self._failures.pop(resource, 0),
                last_error=self._last_error.pop(resource, ""),
                seconds_unreachable=round(time.monotonic() - down_since, 1),
            )

    def _unreachable(self, message: Unreachable) -> None:
        self._failures[message.resource] = self._failures.get(message.resource, 0) + 1
        self._last_error[message.resource] = message.error
        if message.resource in self._down_since:
            return  # logged when it started failing; not again per retry
        self._down_since[message.resource] = time.monotonic()
        self.log.warning(
            "kubernetes.watch_failing",
            resource=message.resource,
            error=message.error,
            retrying="with backoff",
            enforcing="last known state",
        )
