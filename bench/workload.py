"""The benchmark's workload, generated deterministically from a seed.

Writes into one directory:

- ``hosts``: an ``--addn-hosts`` file for the upstream dnsmasq. Every name has its own AAAA address in
  ``2001:db8:be00::/40`` (documentation space, clear of the lab's ``2001:db8:{100,203,244}::/64``), so
  answers carry distinct addresses and every allowed answer means a new set element. IPv4 documentation
  space is only three /24s, so only the first names (in shuffled order) also get an A record, from
  192.0.2.0/24, 198.51.100.100-254 and 203.0.113.100-254 (avoiding the lab's own hosts and transit).
- ``queries.txt``: the dnsperf query file: one AAAA line per name plus one A line per name that has an
  A record, shuffled. About ``allowed_fraction`` of the names are allowed for the querying pod.
- ``fill.txt``: extra names, all allowed for the querying pod, used once each to bring the agent to
  ``target_elements`` live set elements for the memory measurement.
- ``policy.yaml``: ``pods`` Pod documents and ``policies`` FQDNNetworkPolicy documents of
  ``names_per_policy`` matches each (names and ``*.`` patterns), TCP 443.
- ``nftset-domains.txt``: the querying pod's allowed domains as dnsmasq ``--nftset`` domains, so the
  dnsmasq comparison writes the same share of answers.
- ``allowed-names.txt``: the query names allowed for the querying pod (to split latencies by class).
- ``manifest.json``: the counts.

Layout: pod ``k`` has labels ``app=app{k:03d}``; policy ``p`` selects ``app{p % pods:03d}``, so each pod is
selected by ``policies / pods`` policies. Pod 0 (10.244.1.10, the lab's pod-a) runs dnsperf; the other
pods exist only in the policy file. Policy ``p`` allows ``n{j}.p{p}.bench.test`` (exact names) and
``*.w{j}.p{p}.bench.test`` (patterns). Allowed query names are pod 0's exact names plus names under its
patterns; the rest are names of other pods' policies (resolved, never allowed for pod 0).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

DOMAIN = "bench.test"
V6_BASE = ipaddress.IPv6Address("2001:db8:be00::")
V4_POOLS: tuple[tuple[str, int, int], ...] = (
    ("192.0.2.0", 1, 254),
    ("198.51.100.0", 100, 254),
    ("203.0.113.0", 100, 254),
)
PATTERNS_PER_POLICY = 4


@dataclass(frozen=True)
class WorkloadSpec:
    seed: int = 1
    names: int = 20_000
    allowed_fraction: float = 0.8
    pods: int = 100
    policies: int = 1_000
    names_per_policy: int = 20
    target_elements: int = 100_000
    namespace: str = "default"


@dataclass(frozen=True)
class Manifest:
    spec: WorkloadSpec
    query_lines: int
    a_queries: int
    aaaa_queries: int
    allowed_names: int
    allowed_query_lines: int
    allowed_elements_main: int
    fill_names: int
    pod_ipv4: str
    pod_ipv6: str
    files: dict[str, str]


def pod_ips(k: int) -> tuple[str, str]:
    return f"10.244.1.{10 + k}", f"2001:db8:244::{10 + k}"


def policy_label(p: int, spec: WorkloadSpec) -> str:
    return f"app{p % spec.pods:03d}"


def exact_names(p: int, spec: WorkloadSpec) -> list[str]:
    return [f"n{j}.p{p:04d}.{DOMAIN}" for j in range(spec.names_per_policy - PATTERNS_PER_POLICY)]


def pattern_bases(p: int) -> list[str]:
    """The literal tails of policy p's patterns: pattern j is ``*.`` + base j."""
    return [f"w{j}.p{p:04d}.{DOMAIN}" for j in range(PATTERNS_PER_POLICY)]


def v4_addresses() -> list[str]:
    out = []
    for base, first, last in V4_POOLS:
        net = ipaddress.IPv4Address(base)
        out += [str(net + i) for i in range(first, last + 1)]
    return out


def _selected_policies(k: int, spec: WorkloadSpec) -> list[int]:
    return [p for p in range(spec.policies) if p % spec.pods == k]


def _other_name(rng: random.Random, spec: WorkloadSpec, serial: int) -> str:
    """A name of some policy that does not select pod 0."""
    while True:
        p = rng.randrange(spec.policies)
        if p % spec.pods != 0:
            break
    if rng.random() < 0.3:
        return f"n{rng.randrange(spec.names_per_policy - PATTERNS_PER_POLICY)}.p{p:04d}.{DOMAIN}"
    return f"x{serial}.{rng.choice(pattern_bases(p))}"


def _query_names(rng: random.Random, spec: WorkloadSpec) -> tuple[list[str], set[str]]:
    mine = _selected_policies(0, spec)
    allowed_target = round(spec.names * spec.allowed_fraction)
    allowed: list[str] = [n for p in mine for n in exact_names(p, spec)][:allowed_target]
    bases = [b for p in mine for b in pattern_bases(p)]
    serial = 0
    while len(allowed) < allowed_target:
        allowed.append(f"h{serial}.{bases[serial % len(bases)]}")
        serial += 1
    others: set[str] = set()
    while len(others) < spec.names - len(allowed):
        others.add(_other_name(rng, spec, len(others)))
    names = allowed + sorted(others)
    rng.shuffle(names)
    return names, set(allowed)


def policy_yaml(spec: WorkloadSpec) -> str:
    parts: list[str] = []
    for p in range(spec.policies):
        matches = [f'    - name: "{n}"' for n in exact_names(p, spec)]
        matches += [f'    - pattern: "*.{b}"' for b in pattern_bases(p)]
        parts.append(
            "\n".join(
                [
                    "apiVersion: networking.gke.io/v1alpha1",
                    "kind: FQDNNetworkPolicy",
                    "metadata:",
                    f"  name: bench-p{p:04d}",
                    f"  namespace: {spec.namespace}",
                    "spec:",
                    "  podSelector:",
                    "    matchLabels:",
                    f"      app: {policy_label(p, spec)}",
                    "  egress:",
                    "  - matches:",
                    *matches,
                    "    ports:",
                    '    - protocol: "TCP"',
                    "      port: 443",
                ]
            )
        )
    for k in range(spec.pods):
        v4, v6 = pod_ips(k)
        parts.append(
            "\n".join(
                [
                    "apiVersion: v1",
                    "kind: Pod",
                    "metadata:",
                    f"  name: pod{k:03d}",
                    f"  namespace: {spec.namespace}",
                    "  labels:",
                    f"    app: app{k:03d}",
                    "status:",
                    "  podIPs:",
                    f"  - ip: {v4}",
                    f'  - ip: "{v6}"',
                ]
            )
        )
    return "# Generated by bench/workload.py; do not edit.\n" + "\n---\n".join(parts) + "\n"


def edit_policy(path: Path, p: int) -> None:
    """Adds one name to policy `p` in the policy file, in place (atomically): a reload after a real
    edit, so every pod that policy selects is reconciled again (with the querying pod's p = 0, every
    element it holds)."""
    text = path.read_text()
    first = f'    - name: "{exact_names(p, WorkloadSpec())[0]}"\n'
    if first not in text:
        raise ValueError(f"policy {p} not found in {path}")
    tmp = path.with_suffix(".edit")
    tmp.write_text(text.replace(first, first + f'    - name: "edited.p{p:04d}.{DOMAIN}"\n', 1))
    tmp.replace(path)


def generate(out: Path, spec: WorkloadSpec | None = None) -> Manifest:
    spec = spec or WorkloadSpec()
    if spec.pods > 100 or spec.policies < spec.pods:
        raise ValueError("pods must be at most 100 (10.244.1.10-109) and policies at least pods")
    rng = random.Random(spec.seed)
    out.mkdir(parents=True, exist_ok=True)
    names, allowed = _query_names(rng, spec)
    v4_pool = v4_addresses()
    mine_bases = [b for p in _selected_policies(0, spec) for b in pattern_bases(p)]
    fill_count = max(
        0, spec.target_elements - len(allowed) - sum(1 for n in names[: len(v4_pool)] if n in allowed)
    )
    fill = [f"f{i}.{mine_bases[i % len(mine_bases)]}" for i in range(fill_count)]

    hosts: list[str] = []
    queries: list[str] = []
    for i, name in enumerate(names):
        hosts.append(f"{V6_BASE + i + 1} {name}")
        queries.append(f"{name} AAAA")
        if i < len(v4_pool):
            hosts.append(f"{v4_pool[i]} {name}")
            queries.append(f"{name} A")
    for i, name in enumerate(fill):
        hosts.append(f"{V6_BASE + len(names) + i + 1} {name}")
    rng.shuffle(queries)

    files = {
        "hosts": "hosts",
        "queries": "queries.txt",
        "fill": "fill.txt",
        "policy": "policy.yaml",
        "nftset_domains": "nftset-domains.txt",
        "allowed": "allowed-names.txt",
    }
    (out / files["hosts"]).write_text("\n".join(hosts) + "\n")
    (out / files["queries"]).write_text("\n".join(queries) + "\n")
    (out / files["fill"]).write_text("".join(f"{n} AAAA\n" for n in fill))
    (out / files["policy"]).write_text(policy_yaml(spec))
    mine = _selected_policies(0, spec)
    domains = [n for p in mine for n in exact_names(p, spec)] + mine_bases
    (out / files["nftset_domains"]).write_text("\n".join(domains) + "\n")
    (out / files["allowed"]).write_text("\n".join(sorted(allowed)) + "\n")

    allowed_lines = sum(1 for q in queries if q.split()[0] in allowed)
    a_queries = sum(1 for q in queries if q.endswith(" A"))
    v4, v6 = pod_ips(0)
    manifest = Manifest(
        spec=spec,
        query_lines=len(queries),
        a_queries=a_queries,
        aaaa_queries=len(queries) - a_queries,
        allowed_names=len(allowed),
        allowed_query_lines=allowed_lines,
        allowed_elements_main=allowed_lines,  # one TCP/443 element per allowed (pod, address)
        fill_names=len(fill),
        pod_ipv4=v4,
        pod_ipv6=v6,
        files=files,
    )
    (out / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    d = WorkloadSpec()
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--names", type=int, default=d.names)
    parser.add_argument("--allowed-fraction", type=float, default=d.allowed_fraction)
    parser.add_argument("--pods", type=int, default=d.pods)
    parser.add_argument("--policies", type=int, default=d.policies)
    parser.add_argument("--names-per-policy", type=int, default=d.names_per_policy)
    parser.add_argument("--target-elements", type=int, default=d.target_elements)
    args = parser.parse_args(argv)
    spec = WorkloadSpec(
        seed=args.seed,
        names=args.names,
        allowed_fraction=args.allowed_fraction,
        pods=args.pods,
        policies=args.policies,
        names_per_policy=args.names_per_policy,
        target_elements=args.target_elements,
    )
    manifest = generate(args.out, spec)
    print(json.dumps(asdict(manifest), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
