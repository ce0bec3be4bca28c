"""In-process cost of verifying one new TCP connection (verify-sni), against what the connection costs
the kernel anyway, measured in the same run.

    .venv/bin/python -m bench.snicore [--connections 20000] [--names 1000]

Per connection the agent handles two queued packets: the SYN (its sequence number is kept) and the
first data packet (a real ClientHello from Python's ssl, about 500 bytes), parsed, matched against a
verifying policy of `--names` names and patterns and decided (fqdn_policy.sni.verifier with
fqdn_policy.policy.decide.snijudge, as fqdn_policy.agent.snicheck runs them). The baseline is a TCP
connect, accept and close over loopback in this process: the ratio says how much the check adds to
a connection's own cost. No netlink here (the queue round trips are measured in the VM lab:
docs/sni.md); this is the Python part, the one that decides how many connections one core can verify.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import statistics
import struct
import time
from collections.abc import Callable

from fqdn_policy.policy.decide.snijudge import judge_presented
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sni.inspect import Inspection
from fqdn_policy.sni.verifier import Action, SniVerifier
from fqdn_policy.sources.fileloader import load_text

POD_IP, CDN = "10.244.1.10", "198.51.100.10"


def client_hello(name: str) -> bytes:
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def packet(sport: int, seq: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, 443, seq, 1, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
        socket.inet_aton(POD_IP), socket.inet_aton(CDN),
    )  # fmt: skip
    return ip + tcp


def index(names: int) -> PolicyIndex:
    # rules of at most 100 names (the schema allows 128 matches per rule)
    rules = "\n".join(
        "  - matches:\n"
        + "\n".join(f"      - name: host{i}.example" for i in range(start, min(start + 100, names)))
        + "\n    ports: [{protocol: TCP, port: 443}]"
        for start in range(0, names, 100)
    )
    text = f"""
apiVersion: networking.gke.io/v1alpha1
kind: FQDNNetworkPolicy
metadata:
  name: cdn
  namespace: default
  annotations: {{fqdn.policy.dev/verify-sni: "true"}}
spec:
  podSelector: {{matchLabels: {{app: c}}}}
  egress:
  - matches:
      - pattern: "*.cdn.example"
    ports: [{{protocol: TCP, port: 443}}]
{rules}
---
apiVersion: v1
kind: Pod
metadata: {{name: c, namespace: default, labels: {{app: c}}}}
status: {{podIP: {POD_IP}}}
"""
    return PolicyIndex(load_text(text))


def core_per_connection(idx: PolicyIndex, count: int, hello: bytes) -> float:
    table = AllowTable(TTLPolicy())

    def judge(src: str, dst: str, port: int, inspection: Inspection) -> tuple[bool, object]:
        judged = judge_presented(idx, table, src, dst, port, inspection.name, inspection.reason)
        return judged.allowed, judged

    core = SniVerifier(judge)
    packets = [(packet(1024 + i % 60000, 1000, 0x02, b""), packet(1024 + i % 60000, 1001, 0x18, hello))
               for i in range(count)]  # fmt: skip
    started = time.perf_counter()
    allowed = 0
    for n, (syn, data) in enumerate(packets):
        core.on_packet(2 * n, syn, 0.0)
        step = core.on_packet(2 * n + 1, data, 0.0)
        allowed += step.actions[0].action is Action.ALLOW
        core.on_tick(0.0) if n % 1000 == 0 else None
    elapsed = time.perf_counter() - started
    assert allowed == count, allowed  # every connection presented an allowed name
    return elapsed / count * 1e6


def loopback_connection(count: int) -> float:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    address = server.getsockname()
    started = time.perf_counter()
    for _ in range(count):
        client = socket.create_connection(address)
        accepted, _ = server.accept()
        client.close()
        accepted.close()
    elapsed = time.perf_counter() - started
    server.close()
    return elapsed / count * 1e6


def median_of(rounds: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(rounds))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.snicore")
    p.add_argument("--connections", type=int, default=20000)
    p.add_argument("--names", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    idx = index(a.names)
    hello = client_hello("a.cdn.example")
    core_us, loop_us = [], []
    for _ in range(a.rounds):  # interleaved: the machine is noisy
        core_us.append(core_per_connection(idx, a.connections, hello))
        loop_us.append(loopback_connection(min(a.connections, 5000)))
    core, loop = statistics.median(core_us), statistics.median(loop_us)
    print(json.dumps({
        "client_hello_bytes": len(hello),
        "core_us_per_connection": round(core, 2),
        "loopback_connect_accept_close_us": round(loop, 2),
        "core_to_loopback_connection": round(core / loop, 3),
        "connections_per_core_second": round(1e6 / core),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
