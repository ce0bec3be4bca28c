"""Warnings for valid patterns that match more than they seem to (docs/semantics.md, "Patterns that
match more than they seem"). A warning never refuses a policy: these patterns can be meant.

- `*` alone matches every name.
- A `*` in the last label (`www.google.*`) matches that name under every top-level domain, including
  ones anybody can register names under (`www.google.evil`).
- A `*` in the registrable label (`*foobar.com`, `foo*.com`, `*.com`, `**.com`) matches domains of other
  registrants (`evilfoobar.com`): whoever owns `evilfoobar.com` decides where it points.

The registrable label is taken to be the one just left of the last label. That is exact for names
under a one-label public suffix (`com`, `io`, `de`) and needs no public suffix list, which would be
data to ship and keep current. Its limit: under a multi-label suffix (`co.uk`, `github.io`,
`s3.amazonaws.com`) the registrable label is further left, so `*foo.co.uk` and `*.github.io` get no
warning although they span registrants too.
"""

from __future__ import annotations

from fqdn_policy.policy.match.names import NameMatcher
from fqdn_policy.policy.model import Policy, PolicySet
from fqdn_policy.policy.spec.schemacheck import Path

# What the example in a warning puts where the `*` was: a name anyone could register.
STAND_IN = "evil"


def _example(pattern: str) -> str:
    """A name the pattern matches that its author likely did not mean."""
    labels = pattern.split(".")
    return ".".join(STAND_IN if label == "**" else label.replace("*", STAND_IN) for label in labels)


def pattern_warnings(pattern: str) -> tuple[str, ...]:
    """Why a normalised, valid pattern matches more than it seems; empty when it does not."""
    if pattern == "*":
        return ("'*' alone matches every name: a selected pod may reach whatever any name resolves to",)
    # The last two labels only, without splitting the whole name: this runs for every pattern of
    # every reload (20,000 of them in the benchmark's policy set).
    rest, _, last = pattern.rpartition(".")
    registrable = rest.rpartition(".")[2] if rest else ""
    if "*" not in last and "*" not in registrable:
        return ()
    out: list[str] = []
    if "*" in last:
        out.append(
            f"{pattern!r} has '*' in its last label (the top-level domain), so it matches that name under "
            f"every top-level domain, such as {_example(pattern)!r}"
        )
    if "*" in registrable:
        out.append(
            f"{pattern!r} has '*' in {registrable!r}, the registrable label (left of the last), so it "
            f"matches domains of other registrants, such as {_example(pattern)!r}"
        )
    return tuple(out)


def matcher_warnings(matcher: NameMatcher) -> tuple[str, ...]:
    return pattern_warnings(matcher.text) if matcher.is_pattern else ()


def policy_warnings(policy: Policy) -> list[tuple[Path, str]]:
    """(field path, message) for every pattern of one policy that warrants a warning."""
    return [
        (("spec", "egress", rule.index, "matches", position, "pattern"), message)
        for rule in policy.egress
        for position, matcher in enumerate(rule.matchers)
        for message in matcher_warnings(matcher)
    ]


def policy_set_warnings(policy_set: PolicySet) -> list[tuple[Policy, Path, str]]:
    return [
        (policy, path, message) for policy in policy_set.policies for path, message in policy_warnings(policy)
    ]
