"""What PolicyGate.admit costs per answer, in this tree and in a baseline tree, in the same run.

For the metrics' claim that counting costs the answer path next to nothing: run it with a checkout of
the commit before them as the baseline (each tree runs in its own interpreter, alternating, best of
several rounds, timed in CPU time, so machine noise hits both alike).

    git archive main | tar -x -C /tmp/base && .venv/bin/python -m bench.admitcost --baseline /tmp/base

No root, no network: the kernel writer is a stub that acknowledges at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs inside the tree under test (PYTHONPATH=tree): prints {case: ns per admit}.
CHILD = r"""
import io, json, sys, time
from dnslib import DNSRecord
from fqdn_policy.ops.decisionlog import DecisionLog, LogMode
from fqdn_policy.agent.gate import PolicyGate
from fqdn_policy.dnsproxy.wire import Answer, Query, parse_query
from fqdn_policy.policy.match.addressguard import AddressGuard
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.sources.fileloader import load_file
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.ttl import TTLPolicy

class AckWriter:
    def submit(self, commands, done):  # the gate of a tree from before the netlink element writes
        done(None)

    def submit_elements(self, table, writes, deletes, done):
        done(None)

n = int(sys.argv[2])
index = PolicyIndex(load_file(sys.argv[1]))
gate = PolicyGate(index, AllowTable(TTLPolicy(60, 86400, 0.0)), AddressGuard(), AckWriter(), "t",
                  decision_log=DecisionLog(io.StringIO(), mode=LogMode.NONE))
parsed = parse_query(DNSRecord.question("www.google.com").pack())
query = Query(parsed.id, parsed.flags, parsed.question, "www.google.com", parsed.qtype)
answer = Answer(0, False, ((4, "198.51.100.10", 300),))
release = lambda ok: None
cases = {"not-selected": "10.244.1.11", "allowed, already covered": "10.244.1.10"}
out = {}
for case, client in cases.items():
    gate.admit(client, "udp", query, answer, release)  # the first write, outside the timing
    started = time.process_time_ns()  # CPU time: other processes on a busy machine do not count
    for _ in range(n):
        gate.admit(client, "udp", query, answer, release)
    out[case] = (time.process_time_ns() - started) / n
print(json.dumps(out))
"""


def measure(tree: Path, policy: Path, n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(policy), str(n)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, required=True, help="source tree to compare against")
    parser.add_argument("--answers", type=int, default=200_000, help="admits per case per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the best of each is kept")
    args = parser.parse_args(argv)
    policy = REPO / "config" / "policy.yaml"
    best: dict[str, dict[str, float]] = {"baseline": {}, "this tree": {}}
    for _ in range(args.rounds):
        for label, tree in (("baseline", args.baseline), ("this tree", REPO)):
            for case, ns in measure(tree, policy, args.answers).items():
                best[label][case] = min(ns, best[label].get(case, float("inf")))
    print("| case | baseline ns/answer | this tree ns/answer | ratio |")
    print("|---|---:|---:|---:|")
    for case, base in best["baseline"].items():
        mine = best["this tree"][case]
        print(f"| {case} | {base:,.0f} | {mine:,.0f} | {mine / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
