"""Stand-in web servers: TCP and UDP services that only say which address was reached.

The banner names the local address the client actually hit, so a test can tell that a
connection really arrived at, say, 198.51.100.10 and not somewhere else."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess

import asyncio_dgram

_udp_tasks: set[asyncio.Task[None]] = set()


def banner(host: str, port: int) -> bytes:
    shown = f"[{host}]" if ":" in host else host
    return f"hello from {shown}:{port}\n".encode()


async def serve_tcp_banner(port: int) -> asyncio.Server:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, local_port = writer.get_extra_info("sockname")[:2]
        try:
            writer.write(banner(host, local_port))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    # Separate v4 and v6 sockets (asyncio sets IPV6_V6ONLY), so v4 clients show up as
    # plain v4 addresses in the banner rather than ::ffff:-mapped ones.
    return await asyncio.start_server(greet, ["0.0.0.0", "::"], port, reuse_address=True)


async def serve_tcp_echo(port: int) -> asyncio.Server:
    """Echoes lines and keeps the connection open: for tests of flows that outlive an allowance."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(echo, ["0.0.0.0", "::"], port, reuse_address=True)


def local_addresses() -> list[str]:
    """Every non-link-local address in the current namespace."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    addrs: list[str] = []
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            if info.get("scope") != "link" and not ipaddress.ip_address(info["local"]).is_link_local:
                addrs.append(info["local"])
    return addrs


async def serve_udp_banner(port: int) -> list[asyncio_dgram.aio.DatagramServer]:
    # One socket per address rather than a wildcard: a wildcard socket would answer from
    # whatever source the route picks, and the client's connected socket would drop a
    # reply that comes from a different address than the one it sent to.
    streams = [await asyncio_dgram.bind((addr, port)) for addr in local_addresses()]
    for stream in streams:
        task = asyncio.create_task(_udp_loop(stream, port))
        # The loop holds tasks only weakly; keep them until they finish.
        _udp_tasks.add(task)
        task.add_done_callback(_udp_tasks.discard)
    return streams


async def _udp_loop(stream: asyncio_dgram.aio.DatagramServer, port: int) -> None:
    host = str(stream.sockname[0])
    while True:
        try:
            _data, addr = await stream.recv()
            await stream.send(banner(host, port), addr)
        except asyncio_dgram.TransportClosed:
            return
        except OSError:
            continue
