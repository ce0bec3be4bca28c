"""The floor for a Python DNS forwarder in this lab: a minimal relay, measured against the upstream.

    sudo .venv/bin/python -m bench.relayfloor [--rounds 2] [--seconds 8] [--busy-poll-us 300]

The relay (this file run with `--serve NODE_IP UPSTREAM_IP`, started in the node namespace)
is what any forwarder must do and nothing more: read a query with `recvfrom`, send it upstream on one
connected socket under a new ID, read the answer, send it back with the client's ID. No parsing, no
validation, no policy, no log, the standard asyncio loop, sockets read in bursts as the agent reads
them. Each round measures the bare upstream and then the relay with bench.ab's runs (warm-up, a
2,000 qps latency run, saturation), on the benchmark's workload. What the agent does beyond this
relay is what its Python costs; what the relay loses against the upstream is the cost of the path and
the four socket calls, which the agent pays too.

`--busy-poll-us N` makes the relay poll its sockets for up to N microseconds before it sleeps in
epoll_wait (its selector polls with a zero timeout until something is ready or the time is up), so an
answer that comes back within N us needs no wake-up from idle. It spends CPU to show how much of the
added latency is waking up: the lowest latency a forwarder gets in this lab.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

BURST = 64


class BusyPollSelector(selectors.EpollSelector):
    """Polls (timeout 0) for up to `spin` seconds before it blocks."""

    def __init__(self, spin: float) -> None:
        super().__init__()
        self.spin = spin

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(0)
        spin = self.spin if timeout is None else min(self.spin, timeout)
        end = time.monotonic() + spin
        while True:
            ready = super().select(0)
            if ready or time.monotonic() >= end:
                break
        if ready:
            return ready
        return super().select(None if timeout is None else max(0.0, timeout - spin))


async def serve(listen: str, upstream: str) -> None:
    loop = asyncio.get_running_loop()
    clients = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clients.bind((listen, 53))
    clients.setblocking(False)
    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.connect((upstream, 53))
    up.setblocking(False)
    pending: dict[int, tuple[bytes, tuple[str, int]]] = {}
    counter = 0

    def from_clients() -> None:
        nonlocal counter
        for _ in range(BURST):
            try:
                data, addr = clients.recvfrom(65535)
            except BlockingIOError:
                return
            counter = (counter + 1) & 0xFFFF
            pending[counter] = (data[:2], addr)
            try:
                up.send(counter.to_bytes(2, "big") + data[2:])
            except OSError:
                pending.pop(counter, None)

    def from_upstream() -> None:
        for _ in range(BURST):
            try:
                data = up.recv(65535)
            except BlockingIOError:
                return
            except OSError:
                continue
            waiting = pending.pop(int.from_bytes(data[:2], "big"), None)
            if waiting is not None:
                with contextlib.suppress(OSError):  # a full buffer: the client retries
                    clients.sendto(waiting[0] + data[2:], waiting[1])

    loop.add_reader(clients.fileno(), from_clients)
    loop.add_reader(up.fileno(), from_upstream)
    print("ready", flush=True)
    await asyncio.Event().wait()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from bench import services
    from bench.ab import one_run, upstream_lab

    rounds: list[dict[str, Any]] = []
    with upstream_lab("fqdn-floor-") as env:
        for _ in range(args.rounds):
            result = {"upstream": one_run(env.lab, services.UPSTREAM_IP, env.queries, args)}
            argv = [sys.executable, __file__, "--serve", services.NODE_IP, services.UPSTREAM_IP]
            argv += ["--busy-poll-us", str(args.busy_poll_us)]
            relay = env.lab.popen("node", argv, stdout=subprocess.PIPE, text=True)
            try:
                if relay.stdout is None or relay.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"the relay did not start (exit status {relay.poll()})")
                result["relay"] = one_run(env.lab, services.NODE_IP, env.queries, args, relay.pid)
            finally:
                services.stop(relay)
            rounds.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    return {"rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serve", nargs=2, metavar=("LISTEN", "UPSTREAM"), help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--latency-seconds", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--outstanding", type=int, default=100)
    p.add_argument("--busy-poll-us", type=float, default=0.0, help="poll this long before sleeping")
    args = p.parse_args(argv)
    if args.serve:
        if args.busy_poll_us > 0:
            spin = args.busy_poll_us / 1e6
            with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(BusyPollSelector(spin))) as r:
                r.run(serve(*args.serve))
        else:
            asyncio.run(serve(*args.serve))
        return 0
    results = measure(args)
    print(
        "| round | upstream QPS | relay QPS | relay / upstream | relay CPU per query, us (of which user) "
        "| relay p50 / p99 at fixed rate, ms (added over the upstream) "
        "| relay user CPU per query at fixed rate, us |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    for i, r in enumerate(results["rounds"], start=1):
        up, relay = r["upstream"], r["relay"]
        print(
            f"| {i} | {up['qps']:,.0f} | {relay['qps']:,.0f} | {relay['qps'] / up['qps']:.3f} | "
            f"{relay['cpu_us_per_query']} ({relay['user_cpu_us_per_query']}) | "
            f"{relay['p50_ms']} / {relay['p99_ms']} "
            f"({relay['p50_ms'] - up['p50_ms']:.3f} / {relay['p99_ms'] - up['p99_ms']:.3f}) | "
            f"{relay['fixed_user_cpu_us_per_query']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
