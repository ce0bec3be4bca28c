"""The lab's internet: a fake DNS upstream plus banner services, run inside ``inet``.

    python -m tests.lab.fakeinternet --zone ZONE.yaml \\
        --dns 198.51.100.53:53 --dns [2001:db8:100::53]:53 \\
        --tcp 80 --tcp 443 --udp 443 --stats-file STATS.json --ready-file READY

The ready file is written (atomically, as JSON with the pid and endpoints) only once every
socket is bound, so a test that waits for it never races the listeners. SIGTERM and SIGINT
end it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.lab.banners import serve_tcp_banner, serve_tcp_echo, serve_udp_banner
from tests.lab.dnsserve import DnsService
from tests.lab.hostport import format_hostport, parse_hostport
from tests.lab.querystats import QueryStats
from tests.lab.zone import ZoneFile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.lab.fakeinternet", description=__doc__.split("\n")[0])
    p.add_argument("--zone", type=Path, help="YAML zone file; reloaded when it changes")
    p.add_argument("--dns", type=parse_hostport, action="append", default=[], metavar="HOST:PORT")
    p.add_argument("--tcp", type=int, action="append", default=[], metavar="PORT", help="TCP banner port")
    p.add_argument("--echo", type=int, action="append", default=[], metavar="PORT", help="TCP echo port")
    p.add_argument("--udp", type=int, action="append", default=[], metavar="PORT", help="UDP banner port")
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--stats-file", type=Path)
    return p


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    stats = QueryStats(args.stats_file)
    zone_file = ZoneFile(args.zone, on_reload=stats.set_zone_version)
    stats.set_zone_version(zone_file.version)
    dns = DnsService(lambda: zone_file.zone, stats)

    servers: list[asyncio.Server] = []
    for host, port in args.dns:
        await dns.serve_udp(host, port)
        servers.append(await dns.serve_tcp(host, port))
    for port in args.tcp:
        servers.append(await serve_tcp_banner(port))
    for port in args.echo:
        servers.append(await serve_tcp_echo(port))
    for port in args.udp:
        await serve_udp_banner(port)
    watcher = asyncio.create_task(zone_file.watch())

    if args.ready_file is not None:
        ready = {
            "pid": os.getpid(),
            "dns": [format_hostport(h, p) for h, p in args.dns],
            "tcp": args.tcp,
            "udp": args.udp,
            "zone_version": zone_file.version,
        }
        _write_atomically(args.ready_file, json.dumps(ready))

    await stop.wait()
    watcher.cancel()
    for server in servers:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (OSError, ValueError) as exc:
        print(f"fakeinternet: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
