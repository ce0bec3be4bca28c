"""fqdn_policy.dnsproxy.codes: the one table of DNS numbers, agreeing with dnslib, declared nowhere else."""

import re
from pathlib import Path

from dnslib import CLASS, QTYPE, RCODE

from fqdn_policy.dnsproxy import codes

PACKAGE = Path(__file__).resolve().parents[2] / "fqdn_policy"
# An assignment of a DNS number or of a table of their names, at the start of a line.
REDECLARED = re.compile(
    r"^\s*(?:\w+\s*,\s*)*(RCODE_\w+|QTYPE_\w+|TYPE_[A-Z0-9]+|CLASS_IN)\b[^=\n]*=[^=]", re.M
)


def test_names_agree_with_dnslib():
    for number, name in codes.QTYPE_NAMES.items():
        assert QTYPE[number] == name
    for number, name in codes.RCODE_NAMES.items():
        assert RCODE[number] == name
    assert CLASS[codes.CLASS_IN] == "IN"
    for constant in ("TYPE_A", "TYPE_AAAA", "TYPE_CNAME"):
        assert QTYPE[getattr(codes, constant)] == constant.removeprefix("TYPE_")
    for constant in ("RCODE_NOERROR", "RCODE_FORMERR", "RCODE_SERVFAIL", "RCODE_REFUSED"):
        assert RCODE[getattr(codes, constant)] == constant.removeprefix("RCODE_")


def test_unknown_numbers_are_named_by_number():
    assert (codes.qtype_name(4242), codes.rcode_name(11)) == ("TYPE4242", "RCODE11")


def test_no_other_module_declares_dns_numbers():
    declared = {
        f"{path.relative_to(PACKAGE)}: {match.group(0).strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "codes.py"
        for match in REDECLARED.finditer(path.read_text())
    }
    assert declared == set()
