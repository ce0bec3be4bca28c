"""A policy edit reconciles only the names it can touch, and ends with exactly the elements a full
reconcile (every name matched again) ends with."""

from __future__ import annotations

import random

import pytest

from fqdn_policy.policy.match.policydiff import names_to_rematch
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.policy.state.allowtable import AllowTable
from fqdn_policy.policy.state.reconcile import reconcile
from fqdn_policy.policy.state.ttl import TTLPolicy
from fqdn_policy.sources.fileloader import load_text

POD_DOC = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\n"
    "status: {podIPs: [{ip: 10.244.1.10}, {ip: '2001:db8:244::10'}]}\n"
)
NAMES = [f"h{i}.s{i % 4}.test" for i in range(24)] + ["s1.test", "x.h2.s2.test"]
MATCHERS = ["name: h1.s1.test", "name: h5.s1.test", "name: s1.test", "pattern: '*.s0.test'"]
MATCHERS += ["pattern: '*.s2.test'", "pattern: '**.s2.test'", "pattern: 'h*.s3.test'", "pattern: '*'"]
PORTS = ["", "    ports: [{protocol: TCP, port: 443}]\n", "    ports: [{protocol: TCP}]\n"]
PORTS += ["    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 443}]\n"]


def policy(name: str, matchers: list[str], ports: str) -> str:
    lines = "".join(f"    - {m}\n" for m in matchers)
    return (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  podSelector: {{matchLabels: {{app: a}}}}\n"
        f"  egress:\n  - matches:\n{lines}{ports}"
    )


def random_policy(rng: random.Random, name: str, allow_everything: bool) -> str:
    choices = MATCHERS if allow_everything else MATCHERS[:-1]
    return policy(name, rng.sample(choices, rng.randint(1, 3)), rng.choice(PORTS))


def edited(rng: random.Random, before: list[str], allow_everything: bool) -> list[str]:
    """One edit: a policy replaced, removed, or one added."""
    after = list(before)
    roll = rng.random()
    if roll < 0.6:
        k = rng.randrange(len(after))
        after[k] = random_policy(rng, f"p{k}", allow_everything)
    elif roll < 0.8 and len(after) > 1:
        del after[rng.randrange(len(after))]
    else:
        after.append(random_policy(rng, "added", allow_everything))
    return after


def index_of(docs: list[str]) -> PolicyIndex:
    return PolicyIndex(load_text("---\n".join([*docs, POD_DOC])))


def filled(index: PolicyIndex) -> AllowTable:
    table = AllowTable(TTLPolicy(5, 3600, refresh_slack=0.0))
    client = index.pod("default/a")
    for step, name in enumerate(NAMES):
        match = client.rules.match(name)
        if match.rules:
            addresses = [(4, f"198.51.100.{step % 7}", 300), (6, f"2001:db8:100::{step % 5}", 60 + step)]
            table.commit(table.plan(client.key, client.ips_by_version, name, match.grants, addresses, 10.0))
    return table


def live(table: AllowTable, now: float) -> dict:
    return {e: until for e, until in table.expiry.items() if until > now}


@pytest.mark.parametrize("seed", range(40))
def test_an_edit_ends_where_a_full_reconcile_ends(seed):
    rng = random.Random(seed)
    before = [random_policy(rng, f"p{k}", allow_everything=seed % 5 == 0) for k in range(3)]
    after = edited(rng, before, allow_everything=seed % 7 == 0)
    old_index = index_of(before)
    new_index = PolicyIndex(load_text("---\n".join([*after, POD_DOC])), previous=old_index)
    partial, full = filled(old_index), filled(old_index)
    now = 100.0
    rec = reconcile(partial, new_index, now, previous=old_index)
    assert len(set(rec.deletes)) == len(rec.deletes)
    partial.apply_reconciliation(rec)
    full.apply_reconciliation(reconcile(full, new_index, now))
    assert live(partial, now) == live(full, now)


def test_only_names_under_a_changed_matcher_are_matched_again():
    old = index_of([policy("p", ["name: h1.s1.test", "pattern: '*.s2.test'"], "")])
    new = index_of([policy("p", ["name: h1.s1.test", "pattern: '*.s2.test'", "name: h3.s3.test"], "")])
    rules_old, rules_new = old.pod("default/a").rules, new.pod("default/a").rules
    names = ["h1.s1.test", "h2.s2.test", "x.h2.s2.test", "h3.s3.test", "s2.test", "a.h3.s3.test", "other"]
    # The changed policy's matchers are indexed under h1.s1.test, s2.test and h3.s3.test.
    assert names_to_rematch(names, rules_old, rules_new) == [
        "h1.s1.test",
        "h2.s2.test",
        "x.h2.s2.test",
        "h3.s3.test",
        "s2.test",
        "a.h3.s3.test",
    ]
    unrelated = index_of([policy("p", ["name: h1.s1.test"], ""), policy("q", ["name: h9.s9.test"], "")])
    assert names_to_rematch(names, rules_old, unrelated.pod("default/a").rules) == names[:3] + names[4:5]
    everything = index_of([policy("p", ["pattern: '*'"], "")])
    assert names_to_rematch(names, rules_old, everything.pod("default/a").rules) is None
