"""Resolutions: the compact pod -> name -> addresses store and its reverse index agree with a plain
dict-of-dicts model under any sequence of records, evictions and retains."""

from __future__ import annotations

import random

from fqdn_policy.policy.state.resolutions import Resolutions

POD = "default/a"


def test_one_address_then_several_then_one_again() -> None:
    r = Resolutions()
    r.record(POD, "x.test", {"198.51.100.1": 10.0})
    assert r.addresses(POD, "x.test") == {"198.51.100.1": 10.0} and r.count(POD, "x.test") == 1
    r.record(POD, "x.test", {"198.51.100.1": 5.0})  # never shortened
    assert r.until(POD, "x.test", "198.51.100.1") == 10.0
    r.record(POD, "x.test", {"198.51.100.2": 20.0})
    assert r.addresses(POD, "x.test") == {"198.51.100.1": 10.0, "198.51.100.2": 20.0}
    r.record(POD, "x.test", {}, evicted=["198.51.100.1"])
    assert r.addresses(POD, "x.test") == {"198.51.100.2": 20.0}
    assert r.names_of(POD, "198.51.100.1") == set()
    assert r.names_of(POD, "198.51.100.2") == {"x.test"}


def test_an_address_of_two_names_keeps_both_until_each_goes() -> None:
    r = Resolutions()
    r.record(POD, "a.test", {"198.51.100.1": 10.0})
    r.record(POD, "b.test", {"198.51.100.1": 30.0})
    assert r.names_of(POD, "198.51.100.1") == {"a.test", "b.test"}
    r.retain(POD, lambda _name, _dst, until: until > 20.0)
    assert r.names_of(POD, "198.51.100.1") == {"b.test"}
    assert r.count(POD, "a.test") == 0 and len(r) == 1
    r.retain(POD, lambda _name, _dst, until: until > 40.0)
    assert len(r) == 0 and r.pods() == []


def test_matches_a_plain_model_under_random_operations() -> None:
    """`record` and `extend` (one address), evictions, retains and dropped pods."""
    rng = random.Random(5)
    r = Resolutions()
    model: dict[tuple[str, str], dict[str, float]] = {}
    pods, names, dsts = ["p/a", "p/b"], ["a.test", "b.test", "c.test"], [f"198.51.100.{i}" for i in range(5)]
    for step in range(3000):
        pod, qname = rng.choice(pods), rng.choice(names)
        roll = rng.random()
        if roll < 0.6:
            resolved = {d: float(rng.randrange(100)) for d in rng.sample(dsts, rng.choice([1, 1, 1, 2]))}
            evicted = rng.sample(dsts, 1) if rng.random() < 0.2 else []
            evicted = [d for d in evicted if d not in resolved]
            if len(resolved) == 1 and not evicted and rng.random() < 0.5:
                ((dst, until),) = resolved.items()
                r.extend(pod, qname, dst, until)  # the covered repeat's shortcut: the same as record
            else:
                r.record(pod, qname, resolved, evicted)
            known = model.setdefault((pod, qname), {})
            for d in evicted:
                known.pop(d, None)
            for d, until in resolved.items():
                known[d] = max(known.get(d, 0.0), until)
        elif roll < 0.8:
            cut = float(rng.randrange(100))
            r.retain(pod, lambda _n, _d, until, cut=cut: until > cut)
            for (p, n), known in model.items():
                if p == pod:
                    model[(p, n)] = {d: u for d, u in known.items() if u > cut}
        else:
            r.drop_pod(pod)
            model = {k: v for k, v in model.items() if k[0] != pod}
        model = {k: v for k, v in model.items() if v}
        assert sorted(r.items()) == sorted((p, n, d, u) for (p, n), v in model.items() for d, u in v.items())
        for pod in pods:
            for dst in dsts:
                want = {n for (p, n), v in model.items() if p == pod and dst in v}
                assert r.names_of(pod, dst) == want, step
        assert len(r) == len(model)


def test_counts_soonest_and_expiry_match_a_plain_model():
    """Per-pod entry counts, the total, `soonest` (exact, whatever was extended or removed) and
    `expire_due` agree with a plain model under records, extensions, removals and retains."""
    rng = random.Random(11)
    r = Resolutions()
    model: dict[tuple[str, str, str], float] = {}
    pods, names, dsts = ["p/a", "p/b"], ["a.t", "b.t", "c.t", "d.t"], [f"198.51.100.{i}" for i in range(6)]
    now = 0.0
    for step in range(4000):
        pod, qname, dst = rng.choice(pods), rng.choice(names), rng.choice(dsts)
        roll = rng.random()
        if roll < 0.5:
            until = now + rng.randrange(1, 200)
            r.record(pod, qname, {dst: until})
            model[(pod, qname, dst)] = max(model.get((pod, qname, dst), 0.0), until)
        elif roll < 0.6:
            assert r.remove(pod, qname, dst) == ((pod, qname, dst) in model)
            model.pop((pod, qname, dst), None)
        elif roll < 0.65:
            cut = now + rng.randrange(100)
            r.retain(pod, lambda _n, _d, until, cut=cut: until > cut)
            model = {k: u for k, u in model.items() if k[0] != pod or u > cut}
        elif roll < 0.9:
            n = rng.randrange(1, 4)
            skipped = rng.choice(names)
            got = r.soonest(pod, n, lambda name, _dst, skipped=skipped: name == skipped)
            mine = sorted((u, q, d) for (p, q, d), u in model.items() if p == pod and q != skipped)
            assert [u for _, _, u in got] == [u for u, _, _ in mine[:n]], step
            assert all(model[(pod, q, d)] == u for q, d, u in got)
        else:
            now += rng.randrange(1, 30)
            expired = r.expire_due(now)
            gone = {k: u for k, u in model.items() if u <= now}
            assert sorted(expired) == sorted((p, q, d, u) for (p, q, d), u in gone.items()), step
            model = {k: u for k, u in model.items() if u > now}
        for p in pods:
            assert r.entries_of(p) == sum(1 for k in model if k[0] == p), step
        assert r.total == len(model)


def test_a_limited_expiry_sweep_says_more_is_due():
    r = Resolutions()
    for i in range(5):
        r.record("p/a", f"n{i}.t", {"198.51.100.1": 10.0 + i})
    assert len(r.expire_due(20.0, limit=3)) == 3 and r.has_due(20.0)
    assert len(r.expire_due(20.0, limit=3)) == 2 and not r.has_due(20.0)
    assert r.total == 0 and r.pods() == []
