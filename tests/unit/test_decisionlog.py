"""The decision log's modes: nothing silent, repeats counted, failures always written."""

import io
import json

from fqdn_policy.ops.decisionlog import DecisionLog, LogMode

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
    assert not log.close_window_if_due(30.0)
    assert len(lines(stream)) == 1  # window not over yet
    assert log.close_window_if_due(61.0)
    log.write_closed()
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


def test_timestamps_match_the_other_log_lines_format():
    from datetime import UTC, datetime

    from fqdn_policy.ops.decisionlog import UtcTimestamps

    stamps = UtcTimestamps()
    # Within one second (the cached prefix), across a second, a minute, a day and a year boundary,
    # and values that round up into the next second.
    for t in (
        1764147600.0, 1764147600.25, 1764147600.999999, 1764147601.0000004, 1764147659.9999996,
        1767225599.9999999, 1767225600.5, 0.0, 1e9 + 0.123456,
    ):  # fmt: skip
        expected = datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert stamps.format(t) == expected, t


def test_lines_are_one_json_object_each_with_non_ascii_kept_valid():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.ALL)
    log.write({"client": "10.244.1.10", "qname": "caf\\xc3\\xa9.example", "rules": ["a#egress[0] (x)"]})
    log.write({"client": "10.244.1.10", "qname": "b.example", "allowed": [{"address": "::1", "ttl": 5}]})
    parsed = lines(stream)
    assert [p["qname"] for p in parsed] == ["caf\\xc3\\xa9.example", "b.example"]
    assert parsed[1]["allowed"] == [{"address": "::1", "ttl": 5}]
    assert all(
        p["event"] == "dns.decision" and p["level"] == "info" and p["ts"].endswith("Z") for p in parsed
    )
    assert stream.getvalue().count("\n") == 2


def test_repeats_are_counted_per_client_name_type_and_outcome():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.CHANGES, window=60.0)
    keys = [KEY, (KEY[0], "other.example.com", 1, KEY[3]), (KEY[0], KEY[1], 28, KEY[3])]
    keys += [(KEY[0], KEY[1], 1, "allowed"), ("10.244.1.11", KEY[1], 1, KEY[3])]
    for repeats, key in enumerate(keys, start=1):
        for t in range(repeats + 1):
            log_if_wanted(log, key, now=float(t))
    assert len(lines(stream)) == len(keys)  # each key's first decision
    log.flush_repeats(60.0)
    counted = {(e["client"], e["qname"], e["qtype"], e["outcome"]): e["count"] for e in lines(stream)[5:]}
    assert counted == {key: repeats for repeats, key in enumerate(keys, start=1)}


def test_a_closed_window_is_written_in_slices_and_nothing_is_lost():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.CHANGES, window=60.0, rate=0)  # 250 names at once: no line rate
    names = [f"n{i}.example.com" for i in range(250)]
    for t in (0.0, 1.0, 2.0):
        for name in names:
            log_if_wanted(log, (KEY[0], name, 1, KEY[3]), now=t)
    assert len(lines(stream)) == 250
    log_if_wanted(log, KEY, now=61.0)  # the query that closes the window writes its own line only
    assert len(lines(stream)) == 251
    assert log.close_window_if_due(61.5)  # lines are waiting
    slices = 0
    while log.write_closed(100):
        slices += 1
        assert len(lines(stream)) == 251 + 100 * slices
    repeated = [e for e in lines(stream) if e["event"] == "dns.repeated"]
    assert slices == 2 and len(repeated) == 250
    assert {e["qname"]: e["count"] for e in repeated} == dict.fromkeys(names, 2)
    assert all(e["window_s"] == 61.0 for e in repeated)
    assert not log.write_closed(100) and not log.close_window_if_due(62.0)


def test_counted_repeat_is_wants_for_a_decision_that_would_only_be_counted():
    """The gate's shortcut for covered repeats: where it says "counted", `wants` would have counted the
    decision and printed nothing; where it declines, it recorded nothing and `wants` takes over. So a
    log driven through it writes exactly the lines, and counts exactly the repeats, of one that is not."""
    import random

    rng = random.Random(7)
    keys = [("10.244.1.10", f"n{i}.example.com", qtype, "allowed") for i in range(4) for qtype in (1, 28)]
    for mode in LogMode:
        plain, shortcut = io.StringIO(), io.StringIO()
        logs = DecisionLog(plain, mode, window=10.0), DecisionLog(shortcut, mode, window=10.0)
        now, declined = 0.0, 0
        for _ in range(2_000):
            now += rng.choice((0.0, 0.01, 0.5, 3.0))
            key = rng.choice(keys)
            wrote = rng.random() < 0.05
            log_if_wanted(logs[0], key, wrote=wrote, now=now)
            client, qname, qtype, outcome = key
            if wrote or not logs[1].counted_repeat(client, qname, qtype, outcome, now):
                declined += 1
                log_if_wanted(logs[1], key, wrote=wrote, now=now)
            for log in logs:
                if log.close_window_if_due(now):
                    log.write_closed()
        assert lines(plain) != [] or mode is LogMode.NONE
        assert [(e["event"], e.get("qname"), e.get("count")) for e in lines(plain)] == [
            (e["event"], e.get("qname"), e.get("count")) for e in lines(shortcut)
        ]
        assert logs[0].suppressed == logs[1].suppressed
        assert declined < 2_000 or mode is LogMode.ALL  # the shortcut was taken, not always declined


def flood(log, who, names, now, wrote=True, failed=False, client="10.244.1.10"):
    """`names` new names of one pod at one moment: how many got a line."""
    written = 0
    for i in range(names):
        if log.wants((client, f"n{i}.flood.example", 1, "allowed"), wrote, failed, now, who):
            written += 1
    return written


def test_a_pods_lines_beyond_its_rate_are_folded_and_other_pods_keep_theirs():
    log = DecisionLog(io.StringIO(), LogMode.CHANGES, rate=10.0)
    assert flood(log, "default/a", 100, now=0.0) == 20  # a burst of twice the rate
    assert flood(log, "default/b", 5, now=0.0, client="10.244.1.11") == 5
    assert flood(log, "default/a", 100, now=1.0) == 10  # refilled at the rate
    assert log.folded == {"default/a": 170}


def test_failures_are_never_folded():
    log = DecisionLog(io.StringIO(), LogMode.CHANGES, rate=1.0)
    flood(log, "default/a", 10, now=0.0)
    assert flood(log, "default/a", 10, now=0.0, failed=True) == 10


def test_mode_all_is_bounded_too_and_none_stays_silent():
    assert flood(DecisionLog(io.StringIO(), LogMode.ALL, rate=2.0), "default/a", 10, now=0.0) == 4
    assert flood(DecisionLog(io.StringIO(), LogMode.NONE, rate=2.0), "default/a", 10, now=0.0) == 0
    assert flood(DecisionLog(io.StringIO(), LogMode.ALL, rate=0.0), "default/a", 10, now=0.0) == 10


def test_a_folded_decision_opens_no_repeat_key():
    """The repeat window holds only what got a line: its memory follows the rate, not the flood."""
    log = DecisionLog(io.StringIO(), LogMode.CHANGES, rate=1.0)
    flood(log, "default/a", 1000, now=0.0)
    assert sum(len(group) for group in log._repeats.values()) == 2
    # A folded name asked again is not a counted repeat: it is decided (and folded or written) again.
    assert not log.counted_repeat("10.244.1.10", "n500.flood.example", 1, "allowed", 0.5)
    assert log.counted_repeat("10.244.1.10", "n0.flood.example", 1, "allowed", 0.5)


def test_folded_lines_are_reported_per_pod_every_interval():
    stream = io.StringIO()
    log = DecisionLog(stream, LogMode.CHANGES, rate=1.0)
    log.report_folded(0.0)
    flood(log, "default/a", 12, now=1.0)
    log.report_folded(5.0)
    assert lines(stream) == []  # the interval is not over
    log.report_folded(10.0)
    (line,) = lines(stream)
    assert line["event"] == "dns.decisions_folded" and line["level"] == "warning"
    assert (line["pod"], line["folded"], line["folded_total"], line["seconds"]) == ("default/a", 10, 10, 10.0)
    log.report_folded(20.0)
    assert len(lines(stream)) == 1  # nothing folded since: no line


def test_the_folded_count_is_bounded_in_pods():
    log = DecisionLog(io.StringIO(), LogMode.CHANGES, rate=1.0)
    for i in range(4096 + 50):
        flood(log, f"10.99.{i // 250}.{i % 250}", 3, now=0.0, client=f"10.99.{i // 250}.{i % 250}")
    assert len(log.folded) <= 4097 and log.folded["(other)"] > 0
    assert len(log._buckets) <= 4096
