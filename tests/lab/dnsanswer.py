"""Turns a parsed query and the zone into a reply; pure, so it is unit-testable without
sockets. Transport concerns (size limits, truncation) live in ``to_wire``."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSRecord

from tests.lab.zone import Entry, Zone, canonical

# What we advertise back in OPT: the common "DNS flag day 2020" value.
SERVER_UDP_PAYLOAD = 1232
CLASSIC_UDP_LIMIT = 512
_MAX_CHAIN = 16


@dataclass
class Plan:
    """What to send for one query, and how to behave while sending it."""

    reply: DNSRecord | None  # None: never answer (``drop``)
    delay_ms: int = 0
    force_tc: bool = False
    truncate: str = "empty"


def query_opt(query: DNSRecord) -> RR | None:
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return rr
    return None


def udp_limit(query: DNSRecord) -> int:
    opt = query_opt(query)
    # For OPT the CLASS field carries the requester's UDP payload size (RFC 6891 6.1.2).
    return max(CLASSIC_UDP_LIMIT, int(opt.rclass)) if opt is not None else CLASSIC_UDP_LIMIT


def _reply_skeleton(query: DNSRecord, rcode: int) -> DNSRecord:
    header = DNSHeader(
        id=query.header.id,
        qr=1,
        opcode=query.header.opcode,
        aa=1,
        rd=query.header.rd,
        ra=1,
        rcode=rcode,
    )
    # Same question objects, so the echoed question keeps the client's exact bytes and case.
    reply = DNSRecord(header, questions=list(query.questions))
    if query_opt(query) is not None:
        reply.add_ar(EDNS0(udp_len=SERVER_UDP_PAYLOAD))
    return reply


def error_reply(query: DNSRecord, rcode: int) -> DNSRecord:
    return _reply_skeleton(query, rcode)


def plan_reply(zone: Zone, query: DNSRecord) -> Plan:
    if query.header.opcode != OPCODE.QUERY:
        return Plan(error_reply(query, RCODE.NOTIMP))
    if len(query.questions) != 1:
        return Plan(error_reply(query, RCODE.FORMERR))
    question = query.q
    qtype = question.qtype
    owner: DNSLabel = question.qname  # first owner keeps the query's spelling, like real servers
    name = canonical(owner)

    answers: list[RR] = []
    chain: list[Entry] = []
    rcode = RCODE.NOERROR
    entry = zone.lookup(name)
    for _ in range(_MAX_CHAIN):
        if entry is None:
            if not zone.exists(name):
                rcode = RCODE.NXDOMAIN
            break
        chain.append(entry)
        if entry.rcode is not None:
            rcode = entry.rcode
            answers = []
            break
        if entry.cname is not None and qtype not in (QTYPE.CNAME, QTYPE.ANY):
            target = entry.records["CNAME"][0]
            answers.append(RR(owner, QTYPE.CNAME, rdata=target, ttl=entry.ttl))
            owner = target.label
            name = entry.cname
            entry = zone.lookup(name)
            continue
        for rtype, rdatas in entry.records.items():
            rtype_code = getattr(QTYPE, rtype)
            if qtype in (QTYPE.ANY, rtype_code):
                answers.extend(RR(owner, rtype_code, rdata=rd, ttl=entry.ttl) for rd in rdatas)
        break
    else:
        # A CNAME loop: a resolver would give up the same way.
        rcode, answers = RCODE.SERVFAIL, []

    reply = _reply_skeleton(query, rcode)
    for rr in answers:
        reply.add_answer(rr)
    if rcode == RCODE.NXDOMAIN or (rcode == RCODE.NOERROR and not answers):
        soa = zone.soa_for(name)
        if soa is not None:
            reply.add_auth(RR(soa.name, QTYPE.SOA, rdata=soa.records["SOA"][0], ttl=soa.ttl))

    return Plan(
        reply=None if any(e.drop for e in chain) else reply,
        delay_ms=sum(e.delay_ms for e in chain),
        force_tc=any(e.force_tc for e in chain),
        truncate=chain[0].truncate if chain else "empty",
    )


def to_wire(plan: Plan, udp_limit: int | None) -> bytes:
    """Pack a reply; for UDP (``udp_limit`` set) truncate with TC when it does not fit."""
    assert plan.reply is not None
    wire = bytes(plan.reply.pack())
    if udp_limit is None or (len(wire) <= udp_limit and not plan.force_tc):
        return wire
    full = plan.reply
    cut = DNSRecord(copy.copy(full.header), questions=list(full.questions))
    cut.header.tc = 1
    # OPT stays: RFC 6891 wants it in truncated replies too, so the client keeps using EDNS.
    cut.ar = [rr for rr in full.ar if rr.rtype == QTYPE.OPT]
    if plan.truncate == "cut":
        for rr in full.rr:
            cut.rr.append(rr)
            if len(cut.pack()) > udp_limit:
                cut.rr.pop()
                break
    return bytes(cut.pack())
