"""Keep the runs a document quotes: copy bench.run result files into bench/records/, which is committed.

    .venv/bin/python -m bench.record bench/results/20261203T101500Z.json [more.json ...]

bench/results/ is git-ignored (every run writes there, most are never quoted); a figure in
docs/benchmarks.md must name a file under bench/records/ so anyone can check it and re-render its table
(`python -m bench.report bench/records/<stamp>.json`). tests/unit/test_benchrecords.py fails when a
quoted record is missing. Only bench.run's JSON is kept: profiles (`-agent-profile.txt`) are large and
are not a figure's source. A file is refused when it is not a bench.run result or is larger than
MAX_BYTES (a run's JSON is tens of kilobytes; a huge one is not what this directory is for).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

RECORDS = Path(__file__).resolve().parent / "records"
MAX_BYTES = 512 * 1024
RESULT_KEYS = ("date_utc", "command", "machine", "targets")


class NotARecord(ValueError):
    pass


def check(path: Path) -> dict:
    """The parsed result, or NotARecord saying why the file cannot be kept."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise NotARecord(f"{path}: {size} bytes; a record is at most {MAX_BYTES} (is it a bench.run result?)")
    try:
        result = json.loads(path.read_text())
    except ValueError as error:
        raise NotARecord(f"{path}: not JSON: {error}") from error
    missing = [key for key in RESULT_KEYS if not isinstance(result, dict) or key not in result]
    if missing:
        raise NotARecord(f"{path}: not a bench.run result (no {', '.join(missing)})")
    return result


def keep(path: Path, records: Path = RECORDS) -> Path:
    """Copy one result into `records` under its own name; an existing record is never overwritten
    with different content (a quoted file must stay what was quoted)."""
    check(path)
    records.mkdir(parents=True, exist_ok=True)
    target = records / path.name
    if target.exists():
        if target.read_bytes() != path.read_bytes():
            raise NotARecord(f"{target} exists with other content; a quoted record is never replaced")
        return target
    shutil.copyfile(path, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="copy bench.run results into bench/records/ (committed)")
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument(
        "--records", type=Path, default=RECORDS, help="where records go (default %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        for path in args.results:
            print(f"kept {keep(path, args.records)}")
    except (NotARecord, OSError) as error:
        print(f"bench.record: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
