"""The decision log's modes: nothing silent, repeats counted, failures always written."""

import io
import json

from agent.decisionlog import DecisionLog, LogMode

KEY = ("10.244.1.10", "www.example.com", 1, "name-not-allowed")


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def log_if_wanted(log, key, wrote=False, failed=False, now=0.0):
    if log.wants(key, wrote, failed, now):
        log.write({"client": key[0], "qname": key[1], "outcome": key[3]}, failed=failed)


def test_changes_mode_counts_repeats_and_reports_them():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.CHANGES, window=60)
    for t in range(5):
        log_if_wanted(log, KEY, now=float(t))
    assert [e["event"] for e in lines(stream)] == ["dns.decision"]
    log.flush_repeats_if_due(30.0)
    assert len(lines(stream)) == 1  # window not over yet
    log.flush_repeats_if_due(61.0)
    repeated = lines(stream)[-1]
    assert (
        repeated["event"] == "dns.repeated"
        and repeated["count"] == 4
        and repeated["qname"] == "www.example.com"
    )
    log_if_wanted(log, KEY, now=62.0)  # a new window prints the first one again
    assert lines(stream)[-1]["event"] == "dns.decision"


def test_writes_and_failures_are_always_written():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.CHANGES)
    for _ in range(3):
        log_if_wanted(log, KEY, wrote=True)
    log_if_wanted(log, KEY, failed=True)
    assert [e["level"] for e in lines(stream)] == ["info", "info", "info", "error"]


def test_all_and_none():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.ALL)
    for _ in range(3):
        log_if_wanted(log, KEY)
    assert len(lines(stream)) == 3
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.NONE)
    log_if_wanted(log, KEY, wrote=True)
    log_if_wanted(log, KEY, failed=True)
    assert [e["level"] for e in lines(stream)] == ["error"]
    entry = lines(stream)[0]
    assert entry["ts"].endswith("Z") and entry["event"] == "dns.decision"


def test_a_write_opens_the_window_so_covered_repeats_are_counted():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.CHANGES, window=60.0)
    log_if_wanted(log, KEY, wrote=True, now=0.0)
    for t in (1.0, 2.0):
        log_if_wanted(log, KEY, now=t)  # covered by that write: counted, not printed
    assert len(lines(stream)) == 1
    log.flush_repeats(60.0)
    assert lines(stream)[-1]["event"] == "dns.repeated" and lines(stream)[-1]["count"] == 2
