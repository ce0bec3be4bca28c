"""The cost of one allow-set write: libnftables JSON (fqdn_policy.enforcer.nft) against the netlink batch
(fqdn_policy.enforcer.elementsocket), in the same run, at empty sets and at ~50,000 elements.

    sudo .venv/bin/python -m bench.nftwrite [--rounds 5] [--fill 50000]

Runs itself again under `unshare -n`: the table lives in a network namespace of its own, which the
kernel removes when the process ends, however it ends. Each call writes new `pod . destination . tcp .
443` elements with a comment, as an answer's write does; a call of each size is timed over a round of
calls, the rounds alternating between the two, and the median round is reported (µs per call), with
the ratio libnftables / netlink and, for the netlink write, how much of it is Python encoding the batch.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from fqdn_policy.enforcer.elementsocket import ElementSocket
from fqdn_policy.enforcer.elementwire import ElementChange, encode_batch
from fqdn_policy.enforcer.nft import Nft
from fqdn_policy.enforcer.ruleset import base_ruleset, element_commands
from fqdn_policy.policy.state.elements import ElementWrite

TABLE = "bench_nftwrite"
SIZES = (1, 16, 64)
CALLS = {1: 400, 16: 150, 64: 60}  # calls per round
FILL_CHUNK = 5000


def _fresh_writes() -> Iterator[ElementWrite]:
    """Distinct elements, pods in 10.244.0.0/16 and destinations in documentation space."""
    i = 0
    while True:
        pod = ipaddress.IPv4Address(0x0AF40000 + 1 + i // 254 % 65000)  # 10.244.x.y
        dst = ipaddress.IPv4Address(0xCB007100 + 1 + i % 254)  # 203.0.113.1-254
        yield ElementWrite((str(pod), str(dst), "tcp", 443), 600, 0.0, f"name{i}.example.com")
        i += 1


def _fill(sock: ElementSocket, count: int) -> None:
    """`count` elements with destinations in 198.51.100.0/24, so measured writes never collide."""
    writes = []
    for i in range(count):
        pod = ipaddress.IPv4Address(0x0AF40000 + 1 + i // 250)
        writes.append(
            ElementWrite((str(pod), f"198.51.100.{i % 250}", "tcp", 443), 3600, 0.0, "fill.example")
        )
    for start in range(0, count, FILL_CHUNK):
        sock.write([ElementChange(TABLE, tuple(writes[start : start + FILL_CHUNK]))])


def _per_call(write: Callable[[list[ElementWrite]], object], batches: list[list[ElementWrite]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        write(batch)
    return (time.perf_counter() - started) / len(batches)


def measure(rounds: int, fill: int) -> list[dict[str, object]]:
    nft = Nft()
    nft.run(base_ruleset(TABLE))
    sock = ElementSocket()
    source = _fresh_writes()
    ways: dict[str, Callable[[list[ElementWrite]], object]] = {
        "libnftables_us": lambda batch: nft.run(element_commands(TABLE, batch)),
        "netlink_us": lambda batch: sock.write([ElementChange(TABLE, tuple(batch))]),
        # the Python share of the netlink write: the same batches encoded, not sent
        "of_which_encoding_us": lambda batch: encode_batch([ElementChange(TABLE, tuple(batch))], 1),
    }
    rows: list[dict[str, object]] = []
    for phase, target in (("empty sets", 0), (f"~{fill:,} elements", fill)):
        if target:
            _fill(sock, target)
        present = len(nft.list_set(TABLE, "allow_v4_port"))
        for size in SIZES:
            # Rounds alternate between the ways, so a busy moment of the machine hits each alike.
            samples: dict[str, list[float]] = {way: [] for way in ways}
            for _ in range(rounds):
                for way, write in ways.items():
                    batches = [[next(source) for _ in range(size)] for _ in range(CALLS[size])]
                    samples[way].append(_per_call(write, batches))
            row: dict[str, object] = {"phase": phase, "elements_before": present, "elements_per_call": size}
            row.update({way: round(statistics.median(s) * 1e6, 1) for way, s in samples.items()})
            row["ratio"] = round(
                statistics.median(samples["libnftables_us"]) / statistics.median(samples["netlink_us"]), 1
            )
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nftwrite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fill", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.in_namespace:
        if os.geteuid() != 0 or not shutil.which("unshare"):
            print("bench.nftwrite needs root and unshare(1) (a network namespace)", file=sys.stderr)
            return 2
        inner = [sys.executable, "-m", "bench.nftwrite", "--in-namespace", *(argv or sys.argv[1:])]
        return subprocess.run(["unshare", "-n", *inner], check=False).returncode
    print(f"load average at the start: {os.getloadavg()[0]:.2f} (1 min)")
    rows = measure(args.rounds, args.fill)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    print(
        f"{'sets':<18} {'elements/call':>13} {'libnftables µs':>15} {'netlink µs':>11}"
        f" {'(encoding µs)':>14} {'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row['phase']:<18} {row['elements_per_call']:>13} {row['libnftables_us']:>15} "
            f"{row['netlink_us']:>11} {row['of_which_encoding_us']:>14} {row['ratio']:>5}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
