"""Benchmark figures can be checked: every record the docs cite is committed and is a bench.run result,
and a cited file of the git-ignored bench/results/ says it was not kept. bench.record keeps results."""

import json
import re
from pathlib import Path

import pytest

from bench import record

ROOT = Path(__file__).resolve().parents[2]
QUOTING = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CITED_RECORD = re.compile(r"bench/records/([0-9TZ]+\.json)")
# A run's file named by its stamp (not the `<stamp>` placeholder of the instructions).
CITED_RESULT = re.compile(r"bench/results/[0-9]{8}T[0-9]{6}Z\.json")
NOT_KEPT = "not kept"


def result(stamp="20261203T101500Z"):
    return {
        "date_utc": stamp,
        "command": "python -m bench.run --quick",
        "machine": {
            "nproc": 2,
            "cpu": "x",
            "kernel": "6.18",
            "dnsperf": "2.10",
            "dnsmasq": "2.90",
            "commit": "abc",
        },
        "targets": {},
    }


def test_every_cited_record_is_committed_and_a_bench_run_result():
    for doc in QUOTING:
        for name in CITED_RECORD.findall(doc.read_text()):
            path = ROOT / "bench" / "records" / name
            assert path.is_file(), f"{doc.name} cites bench/records/{name}, which is not committed"
            record.check(path)


def test_a_cited_result_file_says_it_was_not_kept():
    for doc in QUOTING:
        for paragraph in doc.read_text().split("\n\n"):
            if CITED_RESULT.search(paragraph):
                assert NOT_KEPT in paragraph, f"{doc.name}: cites bench/results/ without '{NOT_KEPT}'"


def test_the_benchmarks_doc_says_its_figures_cannot_be_checked_from_file():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "**Not reproducible from file.**" in text
    assert "python -m bench.record" in text


def test_keep_copies_a_result(tmp_path):
    source = tmp_path / "20261203T101500Z.json"
    source.write_text(json.dumps(result()))
    records = tmp_path / "records"
    kept = record.keep(source, records)
    assert kept == records / source.name and kept.read_bytes() == source.read_bytes()
    assert record.keep(source, records) == kept  # the same file again: nothing to do


def test_a_record_is_never_replaced_with_other_content(tmp_path):
    records = tmp_path / "records"
    source = tmp_path / "20261203T101500Z.json"
    source.write_text(json.dumps(result()))
    record.keep(source, records)
    source.write_text(json.dumps({**result(), "command": "something else"}))
    with pytest.raises(record.NotARecord, match="never replaced"):
        record.keep(source, records)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        (json.dumps({"date_utc": "x"}), "no command, machine, targets"),
        (json.dumps([1, 2]), "not a bench.run result"),
        (json.dumps({**result(), "padding": "x" * record.MAX_BYTES}), "a record is at most"),
    ],
)
def test_what_is_not_a_result_is_refused(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(record.NotARecord, match=message):
        record.keep(path, tmp_path / "records")
    assert not (tmp_path / "records").exists()


def test_the_command_line_says_what_it_kept_or_why_not(tmp_path, capsys):
    good = tmp_path / "20261203T101500Z.json"
    good.write_text(json.dumps(result()))
    assert record.main([str(good), "--records", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out == f"kept {tmp_path / 'r' / good.name}\n"
    assert record.main([str(tmp_path / "missing.json"), "--records", str(tmp_path / "r")]) == 1
    assert "bench.record:" in capsys.readouterr().err
