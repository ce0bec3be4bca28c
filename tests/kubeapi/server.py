"""A fake Kubernetes API server speaking the list/watch wire protocol, for tests of the real client.

- list: `GET /api/v1/pods` (and the custom resource and NetworkPolicy paths) returns a `...List` with
  `metadata.resourceVersion`, pages with `limit`/`continue`, filters `fieldSelector=spec.nodeName=X`;
  built-in lists omit kind/apiVersion per item as the real server does.
- watch: `?watch=true&resourceVersion=N` answers 200 with a chunked stream of JSON lines, replaying the
  history after N then following; `allowWatchBookmarks` gets BOOKMARK events; `timeoutSeconds` ends the
  stream cleanly; a resourceVersion older than the compaction gets `{"type": "ERROR", "object":
  {"kind": "Status", "code": 410, ...}}` and the end of the stream, as kube-apiserver does.
- `drop_watches()` cuts every open stream without its closing chunk; `go_away()` closes the listening
  socket (connections refused) until `come_back()`.
- `failures`: the next requests are answered with these HTTP errors (403 without RBAC, 410, 5xx);
- a bearer token, when set, is required (401 otherwise); every request is recorded in `requests`.
- Events: `POST /api/v1/namespaces/NS/events` creates one (409 if the name exists), `PATCH
  .../events/NAME` applies a JSON merge patch (415 for any other patch type); both need the token;
  each is recorded in `event_requests` as (method, path, content type).
- `/_fake/...` endpoints drive it from another process (the end-to-end tests): put, delete, expire,
  drop, bookmark.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.kubeapi.cluster import RESOURCES, FakeCluster

WATCH_POLL = 0.2  # how often a waiting watch re-checks its timeout


class FakeApiServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        tls: tuple[str, str] | None = None,  # (certificate, key) files: serve HTTPS, as a real one does
    ) -> None:
        self.cluster = FakeCluster()
        self.tls = tls
        self.host = host
        self.port = port
        self.token = token
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.event_requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._pages: dict[str, list[dict[str, Any]]] = {}
        self.failures: list[tuple[int, str]] = []  # the next GETs answer these (code, reason) instead

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> FakeApiServer:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def go_away(self) -> None:
        """Stop listening (new connections are refused) and cut every open connection."""
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None
        with self._lock:
            for sock in list(self._open):
                _cut(sock)
            self._open.clear()

    def come_back(self) -> None:
        self.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self.go_away()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_watches(self) -> None:
        self.cluster.drop_watches()

    def watches(self, resource: str) -> list[dict[str, str]]:
        path = RESOURCES[resource].path
        return [q for p, q in list(self.requests) if p == path and q.get("watch") == "true"]

    def lists(self, resource: str) -> list[dict[str, str]]:
        path = RESOURCES[resource].path
        return [q for p, q in list(self.requests) if p == path and q.get("watch") != "true"]

    def kubeconfig(self, host: str | None = None) -> str:
        user = {"token": self.token} if self.token else {}
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": host or self.url}}],
                "users": [{"name": "agent", "user": user}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}],
                "current-context": "fake",
            }
        )


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.api._lock:
            self.api._open.add(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client went, or go_away()/drop cut the connection
            self.close_connection = True

    def finish(self) -> None:
        with self.api._lock:
            self.api._open.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # --- the Kubernetes API ---

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        cluster = self.api.cluster
        with cluster.changed:  # before the request is visible: a test acting once it sees it is not missed
            generations = (cluster.expiries, cluster.drops, cluster.bookmarks)
        self.api.requests.append((url.path, query))
        if not self._authorised():
            self._status(401, "Unauthorized", "no or wrong bearer token")
            return
        if self.api.failures:
            code, reason = self.api.failures.pop(0)
            self._status(code, reason, f"injected {code}")
            return
        resource = next((r for r in RESOURCES.values() if r.path == url.path), None)
        if resource is None:
            self._status(404, "NotFound", f"the server could not find the requested resource {url.path}")
            return
        node = _node_selector(query.get("fieldSelector", ""))
        if query.get("watch") == "true":
            self._watch(resource.plural, query, node, generations)
        else:
            self._list(resource.plural, query, node)

    def _list(self, resource: str, query: dict[str, str], node: str | None) -> None:
        info = RESOURCES[resource]
        token = query.get("continue")
        if token:
            items = self.api._pages.pop(token, None)
            if items is None:
                self._status(410, "Expired", "the provided continue parameter is too old")
                return
            rv = int(token.split(":")[0])
        else:
            items, rv = self.api.cluster.snapshot(resource)
            items = [i for i in items if _on_node(i, node)]
        limit = int(query.get("limit", "0") or 0)
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            items, rest = items[:limit], items[limit:]
            next_token = f"{rv}:{time.monotonic_ns()}"
            self.api._pages[next_token] = rest
            metadata["continue"] = next_token
        if not info.items_carry_kind:
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        body = {"kind": info.list_kind, "apiVersion": info.api_version, "metadata": metadata, "items": items}
        self._json(200, body)

    def _watch(
        self, resource: str, query: dict[str, str], node: str | None, generations: tuple[int, int, int]
    ) -> None:
        cluster = self.api.cluster
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 3600)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        expiries, drops, marks = generations
        if since < cluster.compacted:
            self._chunk(_gone(since))
            self._end()
            return
        sent = since
        while True:
            with cluster.changed:
                if not self._news(sent, expiries, drops, marks):
                    cluster.changed.wait(WATCH_POLL)
                pending = [e for e in cluster.history if e.resource_version > sent and e.resource == resource]
                expired, dropped = cluster.expiries != expiries, cluster.drops != drops
                mark = bookmarks and cluster.bookmarks != marks
                expiries, drops, marks, now_rv = (
                    cluster.expiries,
                    cluster.drops,
                    cluster.bookmarks,
                    cluster.resource_version,
                )
            if dropped:
                _cut(self.connection)  # no closing chunk: the client sees the stream end prematurely
                self.close_connection = True
                return
            for event in pending:
                sent = event.resource_version
                if _on_node(event.object, node):
                    self._chunk({"type": event.type, "object": event.object})
            if expired:
                self._chunk(_gone(sent))
                self._end()
                return
            if mark:
                info = RESOURCES[resource]
                self._chunk(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": info.kind,
                            "apiVersion": info.api_version,
                            "metadata": {"resourceVersion": str(now_rv)},
                        },
                    }
                )
            if time.monotonic() >= deadline:
                self._end()
                return

    def _news(self, sent: int, expiries: int, drops: int, marks: int) -> bool:
        cluster = self.api.cluster
        return (bool(cluster.history) and cluster.history[-1].resource_version > sent) or (
            cluster.expiries,
            cluster.drops,
            cluster.bookmarks,
        ) != (expiries, drops, marks)

    def _authorised(self) -> bool:
        # The auth scheme is case-insensitive (RFC 7235): the client's in-cluster loader sends "bearer".
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return not self.api.token or (scheme.lower() == "bearer" and token == self.api.token)

    # --- Events ---

    def _event_request(self, method: str) -> tuple[list[str], Any] | None:
        """The path's parts and the body, once authorised; None if answered already."""
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.api.event_requests.append((method, url.path, self.headers.get("Content-Type") or ""))
        if not self._authorised():
            self._status(401, "Unauthorized", "no or wrong bearer token")
            return None
        return url.path.strip("/").split("/"), body

    def _create_event(self, namespace: str, body: Any) -> None:
        if not isinstance(body, dict) or body.get("kind", "Event") != "Event" or not body.get("metadata"):
            self._status(400, "BadRequest", "not an Event")
        elif (body["metadata"].get("namespace") or namespace) != namespace:
            self._status(400, "BadRequest", "the namespace of the object does not match the request")
        elif not self.api.cluster.create_event(namespace, body):
            self._status(409, "AlreadyExists", f"events {body['metadata']['name']!r} already exists")
        else:
            self._json(201, self.api.cluster.events[(namespace, body["metadata"]["name"])])

    def do_PATCH(self) -> None:
        request = self._event_request("PATCH")
        if request is None:
            return
        parts, body = request
        if len(parts) != 6 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "events":
            self._status(404, "NotFound", self.path)
        elif self.headers.get("Content-Type") != "application/merge-patch+json":
            self._status(
                415,
                "UnsupportedMediaType",
                f"this fake takes merge patches, not {self.headers.get('Content-Type')}",
            )
        else:
            patched = self.api.cluster.patch_event(parts[3], parts[5], body)
            if patched is None:
                self._status(404, "NotFound", f'events "{parts[5]}" not found')
            else:
                self._json(200, patched)

    # --- control endpoints for other processes ---

    def do_POST(self) -> None:
        if self.path.startswith("/api/"):
            request = self._event_request("POST")
            if request is None:
                return
            parts, body = request
            if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events":
                self._create_event(parts[3], body)
            else:
                self._status(404, "NotFound", self.path)
            return
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        cluster = self.api.cluster
        if parts[:2] == ["_fake", "put"]:
            rv = cluster.put(parts[2], body)
        elif parts[:2] == ["_fake", "delete"]:
            rv = cluster.delete(parts[2], f"{parts[3]}/{parts[4]}")
        elif parts == ["_fake", "expire"]:
            cluster.expire()
            rv = cluster.resource_version
        elif parts == ["_fake", "drop"]:
            cluster.drop_watches()
            rv = cluster.resource_version
        elif parts == ["_fake", "bookmark"]:
            cluster.bookmark()
            rv = cluster.resource_version
        elif parts == ["_fake", "events"]:
            with cluster.changed:
                self._json(200, {"items": list(cluster.events.values())})
            return
        else:
            self._status(404, "NotFound", url.path)
            return
        self._json(200, {"resourceVersion": str(rv)})

    # --- wire helpers ---

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}
        self._json(code, {**status, "message": message})

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _gone(since: int) -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {since}",
            "reason": "Expired",
            "code": 410,
        },
    }


def _node_selector(selector: str) -> str | None:
    for term in filter(None, selector.split(",")):
        field, _, value = term.partition("=")
        if field == "spec.nodeName":
            return value
    return None


def _on_node(obj: dict[str, Any], node: str | None) -> bool:
    return node is None or (obj.get("spec") or {}).get("nodeName") == node
