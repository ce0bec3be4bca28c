"""List, then watch, one resource, in a thread: the thin HTTP shell around fqdn_policy.sources.clusterstate.

The official client (`kubernetes`) is synchronous, so each watched resource gets a thread that blocks
on its stream and hands each result to the event loop (`post`, which the source makes a
`call_soon_threadsafe`). Decoding happens here, off the loop. The client's API functions, its
configuration (kubeconfig or in-cluster, TLS, tokens) and its line reader are used as they are; its
`Watch.stream` helper is not, because it retries a 410 once with the same (expired) resourceVersion,
and with `deserialize=False` it stops tracking the resourceVersion, so a reconnect would replay events.

The protocol, as client-go's reflector speaks it:
- list (paged with limit/continue) gives the objects and a resourceVersion; watch from it with
  allowWatchBookmarks; every event and BOOKMARK moves the resourceVersion on;
- a watch the server ends (timeoutSeconds) is reopened from the last resourceVersion;
- `{"type": "ERROR", "object": {"code": 410}}` (or an HTTP 410) means that version is compacted away:
  list again, which replaces the state whole;
- anything else (refused, reset, timed out, a 5xx, a garbled line): report it, wait a capped jittered
  backoff, and try the watch again from the last resourceVersion. The state is left as it was, so the
  agent keeps enforcing what it last knew.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from fqdn_policy.sources.backoff import Backoff
from fqdn_policy.sources.clusterstate import EVENT_TYPES
from fqdn_policy.sources.decode import Decoder, Entry

HTTP_GONE = 410
LIST_PAGE_SIZE = 500
CONNECT_TIMEOUT = 5.0
LIST_READ_TIMEOUT = 60.0
WATCH_SECONDS = 300  # the server ends a watch after this (client-go: 5 to 10 min, randomised)
WATCH_READ_GRACE = 30.0  # no byte for WATCH_SECONDS plus this: the connection is dead


@dataclass(frozen=True, slots=True)
class Listed:
    resource: str
    entries: list[Entry]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Changed:
    resource: str
    event_type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    entry: Entry | None  # None for BOOKMARK
    resource_version: str


@dataclass(frozen=True, slots=True)
class Reachable:
    resource: str


@dataclass(frozen=True, slots=True)
class Unreachable:
    resource: str
    error: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class Expired:
    resource: str
    resource_version: str


Message = Listed | Changed | Reachable | Unreachable | Expired
# The client's list function for a resource, with its fixed arguments bound (group, field selector...).
ListCall = Callable[..., Any]


class WatchExpired(Exception):
    pass


class Reflector:
    def __init__(
        self,
        resource: str,
        list_call: ListCall,
        decode: Decoder,
        post: Callable[[Message], None],
        backoff: Backoff | None = None,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.resource = resource
        self.list_call = list_call
        self.decode = decode
        self.post = post
        self.backoff = backoff or Backoff()
        self.watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._relist = threading.Event()
        self._response: Any = None
        # Where the next watch starts: from the last list, event or bookmark (None: list first).
        # Only this thread writes it.
        self.resource_version: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{resource}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._interrupt()
        self._thread.join(timeout)

    def relist(self) -> None:
        """List again now (SIGHUP): ends the current watch; the thread lists before watching again."""
        self._relist.set()
        self._interrupt()

    def _interrupt(self) -> None:
        # A thread blocked reading the stream wakes only when its socket does: shut the socket down.
        response = self._response
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None or self._relist.is_set():
                    self._relist.clear()
                    self._list()
                else:
                    self._watch(self.resource_version)
            except WatchExpired:
                self.resource_version = None
            except Exception as error:
                if self._stop.is_set():
                    break
                if self._relist.is_set():
                    continue
                if isinstance(error, ApiException) and error.status == HTTP_GONE:
                    self.post(Expired(self.resource, self.resource_version or ""))
                    self.resource_version = None
                    continue
                delay = self.backoff.next_delay()
                self.post(Unreachable(self.resource, describe(error), delay))
                self._stop.wait(delay)

    def _list(self) -> None:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
            if token:
                kwargs["_continue"] = token
            try:
                body = self._get(kwargs, (CONNECT_TIMEOUT, LIST_READ_TIMEOUT))
            except ApiException as error:
                if error.status == HTTP_GONE and token:  # the continue token expired: start over
                    items, token = [], None
                    continue
                raise
            items += body.get("items") or []
            metadata = body.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                break
        resource_version = str(metadata["resourceVersion"])
        self.backoff.reset()
        self.post(Reachable(self.resource))
        self.post(Listed(self.resource, [self.decode(item) for item in items], resource_version))
        self.resource_version = resource_version

    def _get(self, kwargs: dict[str, Any], timeout: tuple[float, float]) -> Any:
        response = self.list_call(_preload_content=False, _request_timeout=timeout, **kwargs)
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    def _watch(self, resource_version: str) -> None:
        """Follows one watch until the server ends it, moving `resource_version` on with every event."""
        seconds = self.watch_seconds + random.randint(0, self.watch_seconds)  # spread the reconnects
        response = self.list_call(
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=resource_version,
            timeout_seconds=seconds,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT, seconds + WATCH_READ_GRACE),
        )
        self._response = response
        self.post(Reachable(self.resource))
        try:
            # stop() or relist() may have come before _response was set, so found no socket to shut:
            # the flags are set before the interrupt, so checking them after setting it misses neither.
            if self._stop.is_set() or self._relist.is_set():
                return
            for line in iter_resp_lines(response):
                if self._stop.is_set() or self._relist.is_set():
                    break
                if not line:
                    continue
                self.resource_version = self._event(json.loads(line), resource_version)
                self.backoff.reset()
        finally:
            self._response = None
            response.close()
            response.release_conn()

    def _event(self, event: dict[str, Any], resource_version: str) -> str:
        event_type, obj = event["type"], event["object"]
        if event_type == "ERROR":
            if obj.get("code") == HTTP_GONE:
                self.post(Expired(self.resource, resource_version))
                raise WatchExpired
            raise RuntimeError(f"watch error {obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
        if event_type not in EVENT_TYPES:
            raise RuntimeError(f"unknown watch event type {event_type!r}")
        resource_version = str(obj["metadata"]["resourceVersion"])
        entry = None if event_type == "BOOKMARK" else self.decode(obj)
        self.post(Changed(self.resource, event_type, entry, resource_version))
        return resource_version


def describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}".strip()
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]
