"""verify-sni through a real kernel queue: new verified TCP connections per second, and the connect-to-
first-byte latency verification adds, on versus off in the same run.

    sudo .venv/bin/python -m bench.sniqueue [--rounds 3] [--seconds 5] [--rate 1000] [--concurrency 32]

A throw-away lab (tests.lab.netlab): a server in `inet` that answers each connection's first bytes with
one byte; a client in `pod-a` that connects, sends a real ClientHello for an allowed name, and waits for
that byte. "on": the node's forward hook copies each connection's SYN to NFLOG and queues its first data
packet to the agent's queue reader (fqdn_policy.agent.snicheck.SniChecker, the real one, in a process in
the node namespace), which answers them as the agent does (accept; NF_REPEAT with the verdict mark,
which a rule turns into the connection's conntrack mark). "off": the same lab without the queue rules.
"on_syn_queued": the design before, the SYN queued too (two queue round trips per connection).

The queue rules here are iptables-nft's (`-j NFQUEUE`, through nft_compat), because the development
machine's kernel lacks nft's own queue statement (CONFIG_NFT_QUEUE); the queue, the packets queued (the
first data; bare ACKs accepted in the kernel), the SYN copies, the netlink reader and the verdicts are
the agent's. Install iptables first (`apt-get install iptables`). Two phases per round and variant:
closed loop with `--concurrency` connections in flight (connections per second), and a fixed `--rate`
(latency p50/p99). Rounds interleave the variants; medians are reported, and on/off ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import snicore
from bench.snicore import CDN as SERVER
from bench.snicore import POD_IP, client_hello
from tests.lab.netlab import Lab

PORT = 443
NAME = "good.cdn.example"
OK, DENY = 0x00200000, 0x00400000
QUEUE = 4054
# The design before: the SYN queued and accepted by the reader (two round trips per connection).
SYN_QUEUED = f"-A FORWARD -s {POD_IP} -p tcp --dport {PORT} --syn -j NFQUEUE --queue-num {QUEUE}"
RULES = [
    f"-A FORWARD -m mark --mark {OK:#x}/{OK:#x} -j CONNMARK --or-mark {OK:#x}",
    f"-A FORWARD -m mark --mark {OK:#x}/{OK:#x} -j ACCEPT",
    f"-A FORWARD -m mark --mark {DENY:#x}/{DENY:#x} -p tcp -j REJECT --reject-with tcp-reset",
    f"-A FORWARD -m connmark --mark {OK:#x}/{OK:#x} -j ACCEPT",
    f"-A FORWARD -s {POD_IP} -p tcp --dport {PORT} --syn -j NFLOG --nflog-group {QUEUE} --nflog-size 128",
    f"-A FORWARD -s {POD_IP} -p tcp --dport {PORT} --syn -j ACCEPT",
    f"-A FORWARD -s {POD_IP} -p tcp --dport {PORT} -m length --length 0:80 -j ACCEPT",
    f"-A FORWARD -s {POD_IP} -p tcp --dport {PORT} -j NFQUEUE --queue-num {QUEUE}",
]


# -- roles, each run in its namespace as `python -m bench.sniqueue ROLE` ---------------------------


async def reader() -> None:
    from fqdn_policy import logs
    from fqdn_policy.agent.snicheck import SniChecker
    from fqdn_policy.policy.state.allowtable import AllowTable
    from fqdn_policy.policy.state.ttl import TTLPolicy

    class Policy:
        index = snicore.index(0)  # the verifying policy of bench.snicore: *.cdn.example on TCP 443
        table = AllowTable(TTLPolicy())

    logs.configure()  # JSON lines on stdout, as the agent writes them: the driver counts the denials
    checker = SniChecker(QUEUE, Policy())
    checker.start()
    print(json.dumps({"event": "reading"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    checker.stop()
    print(json.dumps({"connections": {f"{p}/{v}": n for (p, v), n in checker.stats.connections.items()}}))


async def server() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(4096)
            writer.write(b"!")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(answer, SERVER, PORT, backlog=4096)
    print(json.dumps({"event": "listening"}), flush=True)
    async with srv:
        await srv.serve_forever()


async def client(seconds: float, concurrency: int, rate: float) -> dict[str, Any]:
    hello = client_hello(NAME)
    latencies: list[float] = []
    failed = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal failed
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(SERVER, PORT), 3)
            writer.write(hello)
            got = await asyncio.wait_for(reader.read(1), 3)
            writer.close()
            if got != b"!":
                failed += 1
                return
            latencies.append(time.perf_counter() - started)
        except (OSError, TimeoutError):
            failed += 1

    if rate:  # open loop: one connection every 1/rate s, whatever the others do
        tasks, start = [], time.monotonic()
        while time.monotonic() < deadline:
            tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(max(0.0, start + len(tasks) / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    else:

        async def worker() -> None:
            while time.monotonic() < deadline:
                await one()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(latencies[int(q * (len(latencies) - 1))] * 1e3, 3) if latencies else None

    return {"completed": len(latencies), "failed": failed, "per_second": round(len(latencies) / seconds),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99)}  # fmt: skip


# -- the driver --------------------------------------------------------------------------------------


def _role(lab: Lab, ns: str, *argv: str, **kw: Any) -> subprocess.Popen[str]:
    root = str(Path(__file__).resolve().parent.parent)
    cmd = [sys.executable, "-m", "bench.sniqueue", *argv]
    return lab.popen(ns, cmd, cwd=root, text=True, stdout=subprocess.PIPE, **kw)


def _rules(variant: str) -> list[str]:
    if variant == "on_syn_queued":
        return [SYN_QUEUED if "NFLOG" in rule else rule for rule in RULES if "--syn -j ACCEPT" not in rule]
    return RULES


def _measure(lab: Lab, variant: str, a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    proc = None
    if variant != "off":
        for rule in _rules(variant):
            lab.run("node", ["iptables", *rule.split()])
        proc = _role(lab, "node", "reader", stdin=subprocess.PIPE)
        while '{"event": "reading"}' not in (line := proc.stdout.readline()):
            assert line, "the queue reader exited"
    try:
        for phase, extra in (("closed_loop", []), ("fixed_rate", ["--rate", str(a.rate)])):
            argv = ["client", "--seconds", str(a.seconds), "--concurrency", str(a.concurrency), *extra]
            run = _role(lab, "pod-a", *argv)
            out[phase] = json.loads(run.communicate(timeout=a.seconds + 30)[0])
    finally:
        if proc is not None:
            tail = proc.communicate("stop\n", timeout=10)[0].splitlines()
            out["verified"] = json.loads(tail[-1])["connections"]  # the reader did decide them
            reasons = [json.loads(t).get("reason") for t in tail if "egress.sni_denied" in t]
            out["denied_reasons"] = {r: reasons.count(r) for r in set(reasons)}
            out["warnings"] = [t for t in tail if '"level": "warning"' in t or '"level": "error"' in t][:5]
            lab.run("node", ["iptables", "-F", "FORWARD"])
            lab.run("node", ["conntrack", "-F"], check=False)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sniqueue")
    p.add_argument("role", nargs="?", choices=["reader", "server", "client"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--concurrency", type=int, default=32)
    a = p.parse_args(argv)
    if a.role == "reader":
        asyncio.run(reader())
        return 0
    if a.role == "server":
        asyncio.run(server())
        return 0
    if a.role == "client":
        print(json.dumps(asyncio.run(client(a.seconds, a.concurrency, a.rate))))
        return 0
    a.rate = a.rate or 1000.0
    rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": [], "on_syn_queued": []}
    with Lab() as lab:
        srv = _role(lab, "inet", "server")
        assert json.loads(srv.stdout.readline())["event"] == "listening"
        for r in range(a.rounds):
            names = list(rounds)
            for variant in names[r % 3 :] + names[: r % 3]:  # each takes its turn first
                rounds[variant].append(_measure(lab, variant, a))
        srv.kill()
    print(json.dumps(_report(rounds), indent=1))
    return 0


def _report(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def median(variant: str, phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in rounds[variant])

    report: dict[str, Any] = {"rounds": rounds}
    for variant in rounds:
        report[variant] = {
            "connections_per_second": median(variant, "closed_loop", "per_second"),
            "fixed_rate_p50_ms": median(variant, "fixed_rate", "p50_ms"),
            "fixed_rate_p99_ms": median(variant, "fixed_rate", "p99_ms"),
            "failed": sum(
                r[phase]["failed"] for r in rounds[variant] for phase in ("closed_loop", "fixed_rate")
            ),
        }
    on, off = report["on"], report["off"]
    report["on_to_off_connections_per_second"] = round(
        on["connections_per_second"] / off["connections_per_second"], 3
    )
    report["added_p50_ms"] = round(on["fixed_rate_p50_ms"] - off["fixed_rate_p50_ms"], 3)
    report["added_p99_ms"] = round(on["fixed_rate_p99_ms"] - off["fixed_rate_p99_ms"], 3)
    queued = report["on_syn_queued"]
    report["syn_queued_added_p50_ms"] = round(queued["fixed_rate_p50_ms"] - off["fixed_rate_p50_ms"], 3)
    report["syn_queued_added_p99_ms"] = round(queued["fixed_rate_p99_ms"] - off["fixed_rate_p99_ms"], 3)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
