"""A decision's log line: the fields of `dns.decision` for a record the enforcement core chose to log."""

from __future__ import annotations

from typing import Any

from fqdn_policy.dnsproxy.codes import qtype_name, rcode_name
from fqdn_policy.policy.decide.enforcement import LineRecord
from fqdn_policy.policy.match.ruleindex import NameMatch
from fqdn_policy.policy.model import grant_text
from fqdn_policy.policy.state.ttl import TTLPolicy

# Lines keep the text of this many distinct matches (a few hundred bytes each) before starting over.
MATCH_TEXTS = 4096


class DecisionLines:
    def __init__(self, ttl: TTLPolicy) -> None:
        self.ttl = ttl
        self._match_texts: dict[int, tuple[NameMatch, list[str], list[str]]] = {}

    def clear(self) -> None:
        """A new policy: the old rule sets' matches are no longer asked for; their text goes."""
        self._match_texts.clear()

    def fields(self, record: LineRecord) -> dict[str, Any]:
        lookup, decision, error = record.lookup, record.decision, record.error
        fields: dict[str, Any] = {
            "client": lookup.client_ip,
            "pod": decision.pod,
            "qname": record.query.qname_text,
            "qtype": qtype_name(lookup.qtype),
            "rcode": rcode_name(lookup.rcode),
            "transport": record.transport,
            "outcome": decision.outcome,  # a StrEnum: the line gets its text
        }
        match = decision.match
        if match.rules:
            fields["rules"], fields["grants"] = self._match_text(match)
        plan = decision.plan
        if plan is not None:
            fields["allowed"] = [
                {"address": a[1], "ttl": a[2], "timeout": self.ttl.timeout(a[2])}
                for a in lookup.addresses
                if a[1] in plan.resolved
            ]
            fields["elements_written"] = len(plan.writes)
            if plan.evicted:
                fields["evicted"] = plan.evicted
            if plan.over_budget:
                fields["over_budget"] = plan.over_budget
        if decision.guarded:
            fields["guarded"] = list(decision.guarded)
        if error is not None:
            fields["error"] = error
            fields["answer"] = "SERVFAIL"
        return fields

    def _match_text(self, match: NameMatch) -> tuple[list[str], list[str]]:
        """A match's rules and grants as lines show them. A rule set shares one NameMatch among the
        names that match the same rules (every name under one pattern), so the text is made once per
        match rather than once per line. Keyed by id (hashing a NameMatch hashes its rules): the entry
        holds its match, so no other object can have that id while the entry exists."""
        cached = self._match_texts.get(id(match))
        if cached is not None:
            return cached[1], cached[2]
        rules = [str(r) for r in match.rules]
        grants = sorted(grant_text(g) for g in match.grants)
        if len(self._match_texts) >= MATCH_TEXTS:
            self._match_texts.clear()
        self._match_texts[id(match)] = (match, rules, grants)
        return rules, grants
