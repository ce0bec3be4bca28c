"""The fake upstream's answer logic, without sockets or namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from tests.lab.dnsanswer import plan_reply, to_wire, udp_limit
from tests.lab.hostport import parse_hostport
from tests.lab.zone import Zone, ZoneFile

ZONE = Zone.from_mapping(
    {
        "www.google.com": {"A": ["198.51.100.10"], "AAAA": ["2001:db8:100::10"], "ttl": 300},
        "alias.example.com": {"CNAME": "Alias2.example.com", "ttl": 60},
        "alias2.example.com": {"CNAME": "www.google.com", "ttl": 30},
        "dangling.example.com": {"CNAME": "gone.example.com"},
        "loop1.example.com": {"CNAME": "loop2.example.com"},
        "loop2.example.com": {"CNAME": "loop1.example.com"},
        "deep.sub.example.com": {"A": ["198.51.100.30"]},
        "*.wild.example.com": {"A": ["198.51.100.31"]},
        "big.example.com": {"A": [f"198.51.100.{i}" for i in range(100, 160)], "ttl": 30},
        "cut.example.com": {"A": [f"198.51.100.{i}" for i in range(100, 160)], "truncate": "cut"},
        "forcetc.example.com": {"A": ["198.51.100.10"], "tc": True},
        "mail.example.com": {"MX": [[10, "mx.example.com"]], "TXT": ["v=spf1 -all"]},
        "broken.example.com": {"servfail": True},
        "refused.example.com": {"rcode": "refused"},
        "blackhole.example.com": {"A": ["198.51.100.10"], "drop": True},
        "slow.example.com": {"A": ["198.51.100.10"], "delay_ms": 250},
        "example.com": {"SOA": ["ns.example.com", "admin.example.com", 1, 3600, 600, 86400, 30]},
    }
)


def ask(name: str, qtype: str = "A", edns: int | None = None) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    return DNSRecord.parse(q.pack())


def answer(name: str, qtype: str = "A", edns: int | None = None, udp: bool = False) -> DNSRecord:
    query = ask(name, qtype, edns)
    plan = plan_reply(ZONE, query)
    return DNSRecord.parse(to_wire(plan, udp_limit(query) if udp else None))


def test_question_and_id_are_echoed_byte_for_byte():
    query = ask("WwW.GoOgLe.CoM")
    wire = to_wire(plan_reply(ZONE, query), None)
    assert wire[:2] == query.pack()[:2]
    qlen = len(b"\x03WwW\x06GoOgLe\x03CoM\x00") + 4
    assert wire[12 : 12 + qlen] == bytes(query.pack())[12 : 12 + qlen]
    assert str(DNSRecord.parse(wire).rr[0].rname) == "WwW.GoOgLe.CoM."


def test_cname_chain_is_followed_with_each_ttl():
    r = answer("alias.example.com")
    assert [(str(x.rname), QTYPE[x.rtype], x.ttl) for x in r.rr] == [
        ("alias.example.com.", "CNAME", 60),
        ("Alias2.example.com.", "CNAME", 30),
        ("www.google.com.", "A", 300),
    ]


def test_asking_for_the_cname_itself_does_not_follow_it():
    r = answer("alias.example.com", "CNAME")
    assert [QTYPE[x.rtype] for x in r.rr] == ["CNAME"]


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "count"),
    [
        ("nope.example.com", "A", "NXDOMAIN", 0),
        ("www.google.com", "MX", "NOERROR", 0),
        ("sub.example.com", "A", "NOERROR", 0),  # empty non-terminal
        ("x.y.wild.example.com", "A", "NOERROR", 1),
        ("dangling.example.com", "A", "NXDOMAIN", 1),
        ("loop1.example.com", "A", "SERVFAIL", 0),
        ("broken.example.com", "A", "SERVFAIL", 0),
        ("refused.example.com", "A", "REFUSED", 0),
        ("mail.example.com", "MX", "NOERROR", 1),
        ("mail.example.com", "ANY", "NOERROR", 2),
    ],
)
def test_rcodes(name: str, qtype: str, rcode: str, count: int):
    r = answer(name, qtype)
    assert (RCODE[r.header.rcode], len(r.rr)) == (rcode, count)


def test_negative_answers_carry_the_soa():
    for name, qtype in (("nope.example.com", "A"), ("mail.example.com", "A")):
        r = answer(name, qtype)
        assert [(str(x.rname), QTYPE[x.rtype]) for x in r.auth] == [("example.com.", "SOA")]
    assert answer("nope.google.com").auth == []


def test_udp_truncation_respects_512_and_edns():
    r = answer("big.example.com", udp=True)
    assert r.header.tc == 1 and r.rr == [] and r.ar == []
    r = answer("big.example.com", udp=True, edns=1232)
    assert r.header.tc == 0 and len(r.rr) == 60
    assert [QTYPE[x.rtype] for x in r.ar] == ["OPT"]
    r = answer("big.example.com", udp=True, edns=600)
    assert r.header.tc == 1 and [QTYPE[x.rtype] for x in r.ar] == ["OPT"]
    assert answer("big.example.com").header.tc == 0  # TCP never truncates


def test_cut_truncation_keeps_what_fits():
    query = ask("cut.example.com")
    wire = to_wire(plan_reply(ZONE, query), 512)
    r = DNSRecord.parse(wire)
    assert len(wire) <= 512 and r.header.tc == 1 and 0 < len(r.rr) < 60


def test_forced_tc_and_behaviour_options():
    assert answer("forcetc.example.com", udp=True).header.tc == 1
    assert answer("forcetc.example.com").header.tc == 0
    assert plan_reply(ZONE, ask("blackhole.example.com")).reply is None
    assert plan_reply(ZONE, ask("slow.example.com")).delay_ms == 250


def test_zone_file_reload_keeps_old_zone_on_parse_error(tmp_path: Path):
    path = tmp_path / "zone.yaml"
    path.write_text("a.example.com: {A: [198.51.100.10]}\n")
    versions: list[int] = []
    zf = ZoneFile(path, on_reload=versions.append)
    assert versions == [1] and zf.zone.lookup("a.example.com") is not None
    path.write_text("a.example.com: {A: [not-an-ip]\n")
    assert zf.poll() is False and zf.zone.lookup("a.example.com") is not None
    path.write_text("b.example.com: {A: [198.51.100.20], ttl: 5}\n")
    assert zf.poll() is True and versions == [1, 2]
    entry = zf.zone.lookup("b.example.com")
    assert entry is not None and entry.ttl == 5 and zf.zone.lookup("a.example.com") is None


def test_bad_zone_entries_are_rejected():
    with pytest.raises(ValueError, match="CNAME"):
        Zone.from_mapping({"x.example.com": {"CNAME": "y.example.com", "A": ["198.51.100.1"]}})
    with pytest.raises(ValueError, match="unsupported"):
        Zone.from_mapping({"x.example.com": {"HINFO": "x"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.53:53", ("198.51.100.53", 53)),
        ("[2001:db8:100::53]:5353", ("2001:db8:100::53", 5353)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]):
    assert parse_hostport(text) == expected
    assert parse_hostport(expected[0], default_port=53)[0] == expected[0]
