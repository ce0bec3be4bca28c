"""Domain names and name patterns: validation, normalisation and matching.

The rules (docs/semantics.md is the user-facing table):
- `name` matches one name exactly, case-insensitively, with or without the trailing dot.
- In a `pattern`, `*` matches zero or more characters inside one label and never a dot; a label that is
  only `*` matches one whole (never empty) label.
- A pattern that is only `*` matches every name.
- A leading `**.` matches one or more whole labels; `**` anywhere else is invalid.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from dataclasses import dataclass

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

# Hostname characters plus `_` (SRV-style and some cloud names use it); `*` only in patterns.
_NAME_LABEL = re.compile(r"[a-z0-9_-]+")
_PATTERN_LABEL = re.compile(r"[a-z0-9_*-]+")


class InvalidName(ValueError):
    """A name or pattern in a policy is not valid; the message says why and what would be."""


# DNS names compare case-insensitively in ASCII only (RFC 4343). str.lower() folds Unicode too: U+212A
# KELVIN SIGN becomes "k", so "\u212aubernetes.io" would pass the ASCII check as "kubernetes.io" here,
# where the CRD's pattern refuses it and the DNS path (fqdn_policy.dnsproxy.wire) finds the name unmatchable.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def normalize(name: str) -> str:
    """Lower-case the ASCII letters of a name and drop one trailing dot: the form every comparison
    uses. Other characters stay as they are, so the label check refuses them."""
    name = name.translate(_ASCII_LOWER)
    return name[:-1] if name.endswith(".") else name


def _shown(text: str) -> str:
    """A name as a message quotes it: non-ASCII characters escaped, so a KELVIN SIGN cannot pass for K."""
    return repr(text) if text.isascii() else ascii(text)


def _not_ascii(label: str) -> str:
    """A hint naming the first non-ASCII character of a refused label, if it has one."""
    for char in label:
        if not char.isascii():
            what = unicodedata.name(char, "an unnamed character")
            return (
                f" (U+{ord(char):04X} {what} is not ASCII; write an internationalised name in its xn-- form)"
            )
    return ""


def _check_length(text: str, what: str) -> None:
    if not text:
        raise InvalidName(f"{what} is empty")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidName(f"{what} {text!r} is {len(text)} characters long; the limit is {MAX_NAME_LENGTH}")


def validate_name(raw: str) -> str:
    """Return the normalised exact name, or raise InvalidName naming the problem."""
    name = normalize(raw)
    _check_length(name, "name")
    for label in name.split("."):
        if not label:
            raise InvalidName(f"name {raw!r} has an empty label (two dots in a row or a leading dot)")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidName(f"name {raw!r} has a label longer than {MAX_LABEL_LENGTH} characters")
        if not _NAME_LABEL.fullmatch(label):
            hint = " (use `pattern` for wildcards)" if "*" in label else _not_ascii(label)
            raise InvalidName(
                f"name {_shown(raw)} has label {_shown(label)} with characters other than letters, digits, "
                "'-' and '_'" + hint
            )
    return name


def validate_pattern(raw: str) -> str:
    """Return the normalised pattern, or raise InvalidName naming the problem."""
    pattern = normalize(raw)
    _check_length(pattern, "pattern")
    labels = pattern.split(".")
    for index, label in enumerate(labels):
        if not label:
            raise InvalidName(f"pattern {raw!r} has an empty label (two dots in a row or a leading dot)")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidName(f"pattern {raw!r} has a label longer than {MAX_LABEL_LENGTH} characters")
        if not _PATTERN_LABEL.fullmatch(label):
            raise InvalidName(
                f"pattern {_shown(raw)} has label {_shown(label)} with characters other than letters, "
                "digits, '-', '_' and '*'" + _not_ascii(label)
            )
        if "**" in label and (label != "**" or index != 0 or len(labels) == 1):
            raise InvalidName(
                f"pattern {raw!r}: '**' is only valid as the whole first label followed by more labels, "
                "as in '**.example.com'"
            )
    return pattern


def _label_regex(label: str) -> str:
    if label == "*":
        return r"[^.]+"
    return r"[^.]*".join(re.escape(part) for part in label.split("*"))


@dataclass(frozen=True, slots=True)
class NameMatcher:
    """One `name` or `pattern` from a policy, compiled.

    `suffix` is the longest run of trailing labels without a wildcard: an index keyed by it finds the
    candidates for a query name without testing every pattern (see policy.match.ruleindex). The common
    shapes (`*.suffix`, `**.suffix`) match by string tests; only others need a regex, built on first
    use, since compiling thousands of regexes dominated loading a large policy file.
    """

    text: str
    is_pattern: bool
    suffix: str
    shape: str  # "exact", "one-label" (*.suffix), "labels" (**.suffix), "everything" (*), "regex"

    def matches(self, qname: str) -> bool:
        """`qname` must already be normalised (lower case, no trailing dot)."""
        shape = self.shape
        if shape == "exact":
            return qname == self.text
        if shape == "one-label":
            head, dot, tail = qname.partition(".")
            return bool(dot) and bool(head) and tail == self.suffix
        if shape == "labels":
            return len(qname) > len(self.suffix) + 1 and qname.endswith("." + self.suffix)
        if shape == "everything":
            return bool(qname)
        return _regex(self.text).fullmatch(qname) is not None


def compile_name(raw: str) -> NameMatcher:
    name = validate_name(raw)
    return NameMatcher(text=name, is_pattern=False, suffix=name, shape="exact")


def compile_pattern(raw: str) -> NameMatcher:
    pattern = validate_pattern(raw)
    if pattern == "*":
        return NameMatcher(text=pattern, is_pattern=True, suffix="", shape="everything")
    if "*" not in pattern:
        return NameMatcher(text=pattern, is_pattern=True, suffix=pattern, shape="exact")
    labels = pattern.split(".")
    tail: list[str] = []
    for label in reversed(labels):
        if "*" in label:
            break
        tail.append(label)
    suffix = ".".join(reversed(tail))
    wildcards = len(labels) - len(tail)
    if wildcards == 1 and labels[0] == "*":
        return NameMatcher(text=pattern, is_pattern=True, suffix=suffix, shape="one-label")
    if wildcards == 1 and labels[0] == "**":
        return NameMatcher(text=pattern, is_pattern=True, suffix=suffix, shape="labels")
    return NameMatcher(text=pattern, is_pattern=True, suffix=suffix, shape="regex")


@functools.lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    labels = pattern.split(".")
    prefix = ""
    if labels[0] == "**":
        prefix = r"(?:[^.]+\.)+"
        labels = labels[1:]
    return re.compile(prefix + r"\.".join(_label_regex(label) for label in labels))


def suffixes(qname: str) -> list[str]:
    """Every label-aligned suffix of a normalised name, longest first, ending with the root ''."""
    out = [qname]
    start = qname.find(".")
    while start != -1:
        out.append(qname[start + 1 :])
        start = qname.find(".", start + 1)
    out.append("")
    return out
