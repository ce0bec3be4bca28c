"""The dedicated fuzz run: a million inputs through the query and answer paths (tests/fuzz/harness.py).

    .venv/bin/python -m bench.fuzz                       # atheris if installed, 1,000,000 inputs
    .venv/bin/python -m bench.fuzz --engine mutation     # the seeded mutator, no extra dependency

atheris (libFuzzer for Python, `pip install -e '.[fuzz]'`) is coverage-guided: it keeps inputs that reach
new branches of the instrumented dnsproxy/policy/agent code and mutates those, so it finds the deep
paths (compression pointers, CNAME chains, truncation) that random mutation of a few seeds rarely
reaches. It runs in a child process (libFuzzer exits the process when done); the child reports its
resident memory every 50,000 inputs. The seeded mutator is the same target with `random.Random(seed)`.

Writes bench/results/fuzz-<UTC stamp>.json and prints a summary; exit 1 on a finding or when RSS grew
more than 10 % from the end of the first tenth of the run to its end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PROGRESS_EVERY = 50_000
MARK = "FUZZ-PROGRESS "
MAX_RSS_GROWTH_PERCENT = 10.0  # from the end of the first tenth of the run to the end


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _split(data: bytes) -> tuple[bytes, bytes]:
    """An atheris input: a 2-byte query length, the query, then the answer."""
    if len(data) < 2:
        return data, b""
    (n,) = struct.unpack_from("!H", data)
    return data[2 : 2 + n], data[2 + n :]


def child(runs: int, corpus: Path, artifacts: str) -> None:
    import atheris

    with atheris.instrument_imports(include=["dnsproxy", "policy", "agent", "enforcer"]):
        from tests.fuzz import harness

    for i, (q, a) in enumerate(harness.seeds()):
        (corpus / f"seed-{i}").write_bytes(struct.pack("!H", len(q)) + q + a)
    target = harness.FuzzTarget()
    started = time.monotonic()

    def one(data: bytes) -> None:
        target.run_one(*_split(data))
        if target.inputs % PROGRESS_EVERY == 0:
            line = {
                "inputs": target.inputs,
                "seconds": round(time.monotonic() - started, 1),
                "rss_kb": rss_kb(),
            }
            print(MARK + json.dumps(line), file=sys.stderr, flush=True)

    atheris.Setup(
        [sys.argv[0], f"-runs={runs}", "-max_len=70000", "-rss_limit_mb=2048",
         f"-artifact_prefix={artifacts}", "-print_final_stats=1", str(corpus)],
        one,
    )  # fmt: skip
    atheris.Fuzz()


def run_atheris(runs: int, stamp: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fqdn-fuzz-") as corpus:
        argv = [sys.executable, "-m", "bench.fuzz", "--child", "--runs", str(runs), "--corpus", corpus]
        started = time.monotonic()
        proc = subprocess.run(
            argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent
        )
        seconds = time.monotonic() - started
        corpus_size = len(os.listdir(corpus))
    samples = [json.loads(line[len(MARK) :]) for line in proc.stderr.splitlines() if line.startswith(MARK)]
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", proc.stderr)
    findings = [
        line for line in proc.stderr.splitlines() if "Uncaught Python exception" in line or "==ERROR" in line
    ]
    return {
        "engine": "atheris",
        "exit_code": proc.returncode,
        "runs": int(done.group(1)) if done else samples[-1]["inputs"] if samples else 0,
        "seconds": round(seconds, 1),
        "target_inputs": samples[-1]["inputs"] if samples else 0,
        "coverage_edges": int(cov[-1][0]) if cov else None,
        "corpus_files": corpus_size,
        "findings": findings or ([proc.stderr[-3000:]] if proc.returncode != 0 else []),
        "rss_samples": samples,
    }


def run_mutation(runs: int, seed: int) -> dict[str, Any]:
    from tests.fuzz import harness

    samples: list[dict[str, Any]] = []
    started = time.monotonic()

    def progress(n: int) -> None:
        samples.append({"inputs": n, "seconds": round(time.monotonic() - started, 1), "rss_kb": rss_kb()})

    findings: list[str] = []
    try:
        target = harness.mutation_run(runs, seed, on_progress=progress)
        inputs = target.inputs
    except Exception as error:  # a finding: report it with its type
        findings.append(f"{type(error).__name__}: {error}")
        inputs = samples[-1]["inputs"] if samples else 0
    return {
        "engine": "mutation",
        "seed": seed,
        "runs": inputs,
        "seconds": round(time.monotonic() - started, 1),
        "findings": findings,
        "rss_samples": samples,
    }


def memory_verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS after the first 10% of inputs (warm-up: imports, caches, corpus) against the end."""
    if len(samples) < 3:
        return {"rss_growth_percent": None}
    warm = samples[max(1, len(samples) // 10)]
    last = samples[-1]
    growth = (last["rss_kb"] - warm["rss_kb"]) / warm["rss_kb"] * 100
    return {
        "rss_warm_kb": warm["rss_kb"],
        "rss_last_kb": last["rss_kb"],
        "rss_max_kb": max(s["rss_kb"] for s in samples),
        "rss_growth_percent": round(growth, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--engine", choices=["atheris", "mutation"], default=None)
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.runs, args.corpus, str(RESULTS / "fuzz-crash-"))
        return 0
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "mutation"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = run_atheris(args.runs, stamp) if engine == "atheris" else run_mutation(args.runs, args.seed)
    result |= memory_verdict(result["rss_samples"])
    growth = result["rss_growth_percent"]
    result["passed"] = not result["findings"] and (growth is None or growth <= MAX_RSS_GROWTH_PERCENT)
    result |= {"date_utc": stamp, "command": " ".join(["python -m bench.fuzz", *sys.argv[1:]])}
    out = RESULTS / f"fuzz-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "rss_samples"}
    print(json.dumps(summary, indent=2))
    print(f"results in {out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
