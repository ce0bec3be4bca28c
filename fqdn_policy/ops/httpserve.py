"""A minimal HTTP/1.1 server on the agent's own event loop: GET only, one request per connection.

Why on the loop and not prometheus-client's threaded server: /healthz must prove the loop that answers
DNS is turning. A thread would keep answering 200 while the loop is stuck behind a hung call, and
kubelet would never restart the agent. The price is that a slow scrape is served between two loop turns;
rendering the metrics takes well under a millisecond (no per-element work except one pass to count
live set elements).

Deliberately small: requests are a line and headers under 8 KiB read within 5 s, responses carry
Content-Length and `Connection: close`. Not a general web server; bind it to the node's loopback or
an address only the monitoring system reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

MAX_REQUEST_HEAD = 8192
READ_TIMEOUT = 5.0
MAX_CONNECTIONS = 32  # beyond it a connection is closed at once: slow clients cannot pile up tasks

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())


# A handler gets the query parameters (each name's last value) and returns the response.
Handler = Callable[[Mapping[str, str]], Response | Awaitable[Response]]


def parse_request_line(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, path, query) from the request head, or None if it is not an HTTP/1.x request line."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    url = urlsplit(parts[1])
    query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    return parts[0], url.path or "/", query


def render(response: Response) -> bytes:
    reason = REASONS.get(response.status, "")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in response.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class HttpServer:
    def __init__(self, host: str, port: int, routes: Mapping[str, Handler]) -> None:
        self.host = host
        self.port = port
        self.routes = routes
        self._server: asyncio.Server | None = None
        self._open = 0

    async def start(self) -> None:
        # reuse_port: a second agent started for a hitless restart binds beside the first (as DNS does)
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_port=True)

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                head = b""
            if len(head) > MAX_REQUEST_HEAD:
                head = b""
            try:
                response = await self._respond(head)
            except Exception as error:  # a broken handler answers 500; it must not reach the loop
                response = Response(500, f"{type(error).__name__}: {error}\n".encode())
            writer.write(render(response))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, head: bytes) -> Response:
        request = parse_request_line(head)
        if request is None:
            return Response(400, b"bad request\n")
        method, path, query = request
        handler = self.routes.get(path)
        if handler is None:
            return Response(404, f"no such path; try {', '.join(sorted(self.routes))}\n".encode())
        if method != "GET":
            return Response(405, b"only GET\n", headers=(("Allow", "GET"),))
        result = handler(query)
        return await result if isinstance(result, Awaitable) else result
