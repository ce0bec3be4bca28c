"""The collector's pauses while new answers are written: the agent's regime against CPython's.

    .venv/bin/python -m bench.collector [--answers 200000]

Each regime runs in a fresh interpreter on the benchmark's workload (bench.workload: 1,000 policies,
100 pods) with `--answers` distinct names, each answered once (AAAA, a distinct address) and admitted
by the gate for the querying pod, as a node sees while new names keep coming: parse memos, remembered
decisions, allowed elements and their resolutions pile up. The kernel writer is a stub that
acknowledges at once; nothing needs root. Reported per regime: collections by generation, the
longest pause, the total of the pauses, and the pass's CPU time.

- `cpython`: the agent's regime before fqdn_policy.agent.collector: what exists at start frozen, then young
  collections every `--young` allocations (the agent's default) and CPython's middle and old
  generations (thresholds 20 and 100), whose middle collections rescan everything that survived
  the last 20 young ones.
- `agent`: fqdn_policy.agent.collector.CollectorRegime (survivors frozen at once; the frozen heap collected
  whole after growing by a quarter, at most once a minute, which a pass of a few seconds never reaches
  unless `--min-interval` is lowered).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from fqdn_policy.agent.config import GC_THRESHOLD

REGIMES = ("cpython", "agent")


def child(regime: str, answers: int, min_interval: float, young: int) -> dict[str, Any]:
    from bench import workload
    from bench.micro import _ImmediateWriter, _NullStream, aaaa_wires, load_workload
    from fqdn_policy.agent import collector
    from fqdn_policy.agent.gate import PolicyGate
    from fqdn_policy.dnsproxy.parsememo import AnswerMemo, QueryMemo
    from fqdn_policy.ops.collectorpauses import CollectorPauses
    from fqdn_policy.ops.decisionlog import DecisionLog
    from fqdn_policy.policy.match.addressguard import AddressGuard
    from fqdn_policy.policy.state.allowtable import AllowTable
    from fqdn_policy.policy.state.ttl import DEFAULT_REFRESH_SLACK, TTLPolicy

    index, names, client = load_workload(workload.WorkloadSpec().policies, answers)
    wires = aaaa_wires(names, 300)
    table = AllowTable(TTLPolicy(600, 86400, DEFAULT_REFRESH_SLACK))
    log = DecisionLog(stream=_NullStream(), rate=0)  # type: ignore[arg-type]
    gate = PolicyGate(index, table, AddressGuard(), _ImmediateWriter(), "t", decision_log=log)  # type: ignore[arg-type]
    queries, upstream_answers = QueryMemo(), AnswerMemo()

    pending: list[Callable[[], object]] = []  # what the agent's loop would run soon after
    if regime == "agent":
        collector.CollectorRegime(young, pending.append, min_interval=min_interval).install()
    else:
        gc.collect()
        gc.freeze()
        gc.set_threshold(young, 20, 100)
    pauses = CollectorPauses()
    pauses.install()
    released: list[bool] = []
    started = time.process_time()
    for query_wire, answer_wire in wires:
        query = queries.parse(query_wire)
        gate.admit(client, "udp", query, upstream_answers.parse(answer_wire, query.question),
                   released.append)  # fmt: skip
        while pending:
            pending.pop()()
    cpu = time.process_time() - started
    pauses.uninstall()
    snap = pauses.histogram.snapshot()
    return {
        "regime": regime,
        "answers": len(released),
        "elements": len(table),
        "by_generation": pauses.by_generation,
        "longest_ms": round(pauses.longest * 1000, 2),
        "total_ms": round(snap.total * 1000, 1),
        "cpu_s": round(cpu, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answers", type=int, default=200_000)
    p.add_argument(
        "--min-interval", type=float, default=60.0, help="agent regime: seconds between whole collections"
    )
    p.add_argument("--young", type=int, default=GC_THRESHOLD, help="allocations between young collections")
    p.add_argument("--child", choices=REGIMES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.answers, args.min_interval, args.young)))
        return 0
    print("| regime | answers | elements | collections (young / middle / whole) | longest, ms "
          "| all pauses, ms | CPU, s |")  # fmt: skip
    print("|---|---:|---:|---|---:|---:|---:|")
    for regime in REGIMES:
        out = subprocess.run(
            [sys.executable, "-m", "bench.collector", "--child", regime, "--answers", str(args.answers),
             "--min-interval", str(args.min_interval), "--young", str(args.young)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        r = json.loads(out.splitlines()[-1])
        gens = " / ".join(str(n) for n in r["by_generation"])
        print(f"| {regime} | {r['answers']:,} | {r['elements']:,} | {gens} | {r['longest_ms']} "
              f"| {r['total_ms']} | {r['cpu_s']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
