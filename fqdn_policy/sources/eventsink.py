"""Posting the Events fqdn_policy.sources.events decides on, through the official client, off the event loop.

One worker thread: the client is synchronous, and Events are few (rate-limited before they get here).
At most MAX_PENDING wait; beyond that a notice is dropped and counted, so an unreachable API server
never makes the agent hold an unbounded queue. A failed post is logged and not retried: the next
notice of the same kind comes with its count.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from fqdn_policy.logs import get
from fqdn_policy.sources.events import Create, EventBook, Notice, Patch
from fqdn_policy.sources.reflector import describe

MAX_PENDING = 100
REQUEST_TIMEOUT = (5.0, 10.0)
MERGE_PATCH = "application/merge-patch+json"


class EventRecorder:
    def __init__(self, api: client.ApiClient, node: str) -> None:
        self.book = EventBook(node, instance=f"{time.time_ns():x}")
        self.core = client.CoreV1Api(api)
        self.log: Any = get("fqdn_policy.kubernetes")
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")

    def record(self, notice: Notice) -> None:
        action = self.book.note(notice, datetime.now(UTC), time.monotonic())
        if action is None:
            return
        with self._lock:
            if self._pending >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending += 1
        self._executor.submit(self._post, action, notice)

    def _post(self, action: Create | Patch, notice: Notice) -> None:
        try:
            if isinstance(action, Create):
                response = self.core.create_namespaced_event(
                    action.namespace, action.body, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
                )
            else:
                response = self.core.patch_namespaced_event(
                    action.name,
                    action.namespace,
                    action.body,
                    _content_type=MERGE_PATCH,
                    _request_timeout=REQUEST_TIMEOUT,
                    _preload_content=False,
                )
            response.release_conn()
            self.sent += 1
        except Exception as error:  # a failed Event must never disturb the watches
            self.failed += 1
            self.log.warning(
                "kubernetes.event_failed",
                object=f"{notice.ref.namespace}/{notice.ref.name}",
                reason=notice.reason,
                error=describe(error),
            )
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
