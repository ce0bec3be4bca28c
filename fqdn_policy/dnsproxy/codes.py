"""The DNS numbers the agent knows by name: record types, the class, response codes, and their names.

The one table: the wire parser, the server, the decision lines and the metrics all read it here, so a
name written in a log line and the label on a metric can never disagree.
"""

from __future__ import annotations

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

QTYPE_NAMES = {
    TYPE_A: "A",
    2: "NS",
    TYPE_CNAME: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    TYPE_AAAA: "AAAA",
    33: "SRV",
    35: "NAPTR",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}
RCODE_NAMES = {
    RCODE_NOERROR: "NOERROR",
    RCODE_FORMERR: "FORMERR",
    RCODE_SERVFAIL: "SERVFAIL",
    RCODE_NXDOMAIN: "NXDOMAIN",
    RCODE_NOTIMP: "NOTIMP",
    RCODE_REFUSED: "REFUSED",
}


def qtype_name(qtype: int) -> str:
    return QTYPE_NAMES.get(qtype, f"TYPE{qtype}")


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")
