"""What a policy change can touch: the pods it leaves alone, and, for a pod whose policies changed,
the names whose match can differ.

A reload that edits one policy should cost what the edit touches, not every element: with 100,000
elements held by one pod, matching every name it resolved again took ~0.9 s (bench.scale). A name's
match is the union of what the matchers indexed under its suffixes grant (policy.match.ruleindex), so only
names with a suffix under which a changed policy (its old or its new version) has a matcher can match
differently; the others keep their elements as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

from fqdn_policy.policy.match.ruleindex import PolicyIndex, RuleSet


def unchanged_pods(index: PolicyIndex, previous: PolicyIndex) -> set[str]:
    """Pods with the same addresses and the same selecting policies in both indexes."""
    out = set()
    for pod in index.policy_set.pods:
        new, old = index.pod(pod.key), previous.pod(pod.key)
        if new is None or old is None or new.pod.ips != old.pod.ips:
            continue
        new_policies = new.rules.policies if new.rules else ()
        old_policies = old.rules.policies if old.rules else ()
        if new_policies == old_policies:
            out.add(pod.key)
    return out


def pods_gone(index: PolicyIndex, previous: PolicyIndex) -> bool:
    return any(index.pod(p.key) is None for p in previous.policy_set.pods)


def names_to_rematch(names: Iterable[str], old: RuleSet, new: RuleSet) -> list[str] | None:
    """The names whose match under `new` can differ from `old`; None: any of them (a changed policy
    has the pattern `*`, indexed under the root)."""
    changed = [p for p in new.policies if p not in old.policies]
    changed += [p for p in old.policies if p not in new.policies]
    keys = {m.suffix for p in changed for rule in p.egress for m in rule.matchers}
    if "" in keys:
        return None
    by_parent: dict[str, bool] = {}  # a pod's names share few parents: each is walked once
    out = []
    for name in names:
        if name in keys:
            out.append(name)
            continue
        dot = name.find(".")
        if dot == -1:
            continue
        parent = name[dot + 1 :]
        hit = by_parent.get(parent)
        if hit is None:
            hit = by_parent[parent] = _has_suffix_in(parent, keys)
        if hit:
            out.append(name)
    return out


def _has_suffix_in(name: str, keys: set[str]) -> bool:
    """Whether `name` or a label-aligned suffix of it (not the root) is in `keys`."""
    start = 0
    while True:
        if name[start:] in keys:
            return True
        dot = name.find(".", start)
        if dot == -1:
            return False
        start = dot + 1
