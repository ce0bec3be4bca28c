"""Compiles a PolicySet into what the DNS hot path asks: who is this client, and what may it reach?

Pods selected by the same policies share one RuleSet, so its per-name answer cache serves them all.
A RuleSet finds candidate matchers by the query name's suffixes (exact names by the whole name,
patterns by their literal tail), so a lookup costs a few dict probes, not one regex per pattern.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from fqdn_policy.policy.match.names import NameMatcher, suffixes
from fqdn_policy.policy.model import SNI, Grant, LabelSelector, Pod, Policy, PolicySet, verified_grants
from fqdn_policy.policy.spec.networkpolicy import IpBlockElement, ipblock_elements

NAME_CACHE_LIMIT = 65536  # names per RuleSet; a few MB at most, and cleared whole when full


@dataclass(frozen=True, slots=True)
class RuleRef:
    policy: str  # namespace/name
    rule: int
    matched: str  # the name or pattern that matched

    def __str__(self) -> str:
        return f"{self.policy}#egress[{self.rule}] ({self.matched})"


@dataclass(frozen=True, slots=True)
class NameMatch:
    """Everything the rules selecting one pod grant for one query name."""

    rules: tuple[RuleRef, ...]
    grants: frozenset[Grant]


NO_MATCH = NameMatch(rules=(), grants=frozenset())


def _minimal(grants: frozenset[Grant]) -> frozenset[Grant]:
    """Drop grants implied by broader ones: (None, None) covers all, (tcp, None) covers (tcp, 443)."""
    if (None, None) in grants:
        return frozenset({(None, None)})
    return frozenset(g for g in grants if g[1] is None or (g[0], None) not in grants)


class RuleSet:
    """The egress rules of every policy selecting one group of pods."""

    def __init__(self, policies: tuple[Policy, ...], verify_all: bool = False) -> None:
        """`verify_all`: every policy verifies, as if annotated (the agent's --verify-sni)."""
        self.policies = policies
        self.verify_all = verify_all
        # Every (name or pattern, rule) by number, and the numbers by the matcher's literal suffix.
        self._rules: list[tuple[RuleRef, frozenset[Grant]]] = []
        self._by_suffix: dict[str, list[tuple[NameMatcher, int]]] = defaultdict(list)
        for policy in policies:
            for rule in policy.egress:
                verifies = policy.verifies_sni or verify_all
                grants = verified_grants(rule.grants()) if verifies else rule.grants()
                for matcher in rule.matchers:
                    self._by_suffix[matcher.suffix].append((matcher, len(self._rules)))
                    self._rules.append((RuleRef(policy.key, rule.index, matcher.text), grants))
        self._cache: dict[str, NameMatch] = {}
        # One NameMatch per distinct set of matching rules, shared by every name they match: the
        # names under one `*.` pattern all get the same answer, and a NameMatch with its tuple and
        # frozenset is ~370 bytes, 24 MB for a full name cache of distinct names (docs/benchmarks.md).
        self._matches: dict[tuple[int, ...], NameMatch] = {}

    def match(self, qname: str) -> NameMatch:
        """`qname` normalised (lower case, no trailing dot)."""
        cached = self._cache.get(qname)
        if cached is not None:
            return cached
        found: list[int] = []
        by_suffix = self._by_suffix
        # The name's label-aligned suffixes, longest first, then the root "" (policy.match.names.suffixes,
        # inlined: a reconcile after a policy edit matches every name a pod resolved, 100,000 here).
        suffix, start = qname, 0
        while True:
            candidates = by_suffix.get(suffix)
            if candidates is not None:
                found += [number for matcher, number in candidates if matcher.matches(qname)]
            if not suffix:
                break
            dot = qname.find(".", start)
            start = dot + 1
            suffix = qname[start:] if dot != -1 else ""
        result = NO_MATCH
        if found:
            key = tuple(found)
            result = self._matches.get(key) or self._matches.setdefault(key, self._name_match(key))
        if len(self._cache) >= NAME_CACHE_LIMIT:
            self._cache.clear()  # bounded; a clear is cheaper than LRU bookkeeping on every hit
            self._matches.clear()
        self._cache[qname] = result
        return result

    def verifying(self, name: str, port: int) -> tuple[RuleRef, ...]:
        """The rules of verifying policies that let a connection presenting `name` (normalised) on TCP
        `port` through: each matches the name and grants verified TCP on that port. Asked once per
        verified connection, so it searches rather than caching (the DNS path's cache is not touched)."""
        wanted = {(SNI, port), (SNI, None)}
        return tuple(
            self._rules[n][0] for n in self._numbers(name) if not wanted.isdisjoint(self._rules[n][1])
        )

    def _numbers(self, name: str) -> list[int]:
        return [
            number
            for suffix in suffixes(name)
            for matcher, number in self._by_suffix.get(suffix, ())
            if matcher.matches(name)
        ]

    def _name_match(self, numbers: tuple[int, ...]) -> NameMatch:
        grants: frozenset[Grant] = frozenset().union(*(self._rules[n][1] for n in numbers))
        return NameMatch(tuple(self._rules[n][0] for n in numbers), _minimal(grants))


@dataclass(frozen=True, slots=True)
class Client:
    pod: Pod
    rules: RuleSet | None  # None: no policy selects this pod, so it is not enforced
    key: str  # pod.key, built once rather than per lookup
    ips_by_version: dict[int, tuple[str, ...]]  # {4: ..., 6: ...}: the pod's sources per answer family

    @classmethod
    def of(cls, pod: Pod, rules: RuleSet | None) -> Client:
        return cls(pod, rules, pod.key, {4: pod.ips_of_family(4), 6: pod.ips_of_family(6)})


class _NamespacePolicies:
    """One namespace's policies grouped by selector: a pod is matched against each distinct selector
    once (1,000 policies often share a few selectors), and gets its policies in file order."""

    def __init__(self) -> None:
        self.policies: list[Policy] = []
        self.by_selector: dict[LabelSelector, list[int]] = {}

    def add(self, policy: Policy) -> None:
        self.by_selector.setdefault(policy.selector, []).append(len(self.policies))
        self.policies.append(policy)

    def selecting(self, pod: Pod) -> tuple[Policy, ...]:
        found = [i for selector, at in self.by_selector.items() if selector.matches(pod.labels) for i in at]
        return tuple(self.policies[i] for i in sorted(found))


class PolicyIndex:
    def __init__(
        self, policy_set: PolicySet, previous: PolicyIndex | None = None, verify_all: bool = False
    ) -> None:
        """With `previous`, a RuleSet whose policies are unchanged is taken over as it is, name cache
        included (a reload's documents are mostly the same objects, so comparing them is cheap).
        `verify_all`: every policy verifies SNI, as if annotated (--verify-sni)."""
        self.policy_set = policy_set
        self.verify_all = verify_all
        self._by_ip: dict[str, Client] = {}
        self._by_pod: dict[str, Client] = {}
        self._rule_sets: dict[tuple[str, ...], RuleSet] = {}
        earlier = previous._rule_sets if previous is not None else {}
        by_namespace: dict[str, _NamespacePolicies] = defaultdict(_NamespacePolicies)
        for policy in policy_set.policies:
            by_namespace[policy.namespace].add(policy)
        for pod in policy_set.pods:
            selecting = by_namespace[pod.namespace].selecting(pod) if pod.namespace in by_namespace else ()
            rules = None
            if selecting:
                key = tuple(p.key for p in selecting)
                rules = self._rule_sets.get(key)
                if rules is None:
                    rules = earlier.get(key)
                    if rules is None or rules.policies != selecting or rules.verify_all != verify_all:
                        rules = RuleSet(selecting, verify_all)
                    self._rule_sets[key] = rules
            client = Client.of(pod, rules)
            self._by_pod[pod.key] = client
            for ip in pod.ips:
                self._by_ip[ip] = client

    def verifies_sni(self) -> bool:
        """Whether some policy in force verifies SNI: the verify-sni datapath is needed."""
        return self.verify_all or any(p.verifies_sni for p in self.policy_set.policies)

    def client(self, ip: str) -> Client | None:
        return self._by_ip.get(ip)

    def pod(self, key: str) -> Client | None:
        return self._by_pod.get(key)

    def enforced_pods(self) -> int:
        """How many pods some policy selects."""
        return sum(1 for c in self._by_pod.values() if c.rules is not None)

    def enforced_ips(self, version: int) -> frozenset[str]:
        """Addresses of every selected pod: the kernel drops what these send unless allowed."""
        return frozenset(
            ip for c in self._by_pod.values() if c.rules is not None for ip in c.pod.ips_of_family(version)
        )

    def reject_ips(self, version: int) -> frozenset[str]:
        """Addresses of pods selected by a policy annotated to reject: denied packets get a fast failure."""
        return frozenset(
            ip
            for c in self._by_pod.values()
            if c.rules is not None and any(p.rejects for p in c.rules.policies)
            for ip in c.pod.ips_of_family(version)
        )

    def ipblock_elements(self) -> frozenset[IpBlockElement]:
        """What NetworkPolicy ipBlock rules allow the enforced pods (composed with the FQDN rules)."""
        if not self.policy_set.network_policies:
            return frozenset()
        enforced = [c.pod for c in self._by_pod.values() if c.rules is not None]
        return ipblock_elements(self.policy_set.network_policies, enforced)
