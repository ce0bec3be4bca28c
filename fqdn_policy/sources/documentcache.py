"""The models of the last policy file's documents, by the digest of each document's text: a reload
of a file where few documents changed parses and validates only those.

Parsing and validating 1,000 policies costs ~1 s of CPU (PyYAML builds its Python objects in Python
even with libyaml's parser); a SIGHUP or an edit of one policy should not pay that again. The file is
cut into documents at the lines that start with `---` (YAML's document marker: no scalar may hold such
a line, so the cut is where libyaml's would be); a file with directives (`%YAML`) is not cut. Anything
unexpected in a cut document (a YAML error, a validation problem) makes the loader fall back to parsing
the whole file, so errors and their line numbers are exactly what a load without a cache reports.

Pure: text in, models out; the caller (fqdn_policy.sources.filesource) owns the cache across reloads.
"""

from __future__ import annotations

import hashlib
import itertools
import re

from fqdn_policy.policy.model import NetworkPolicy, Pod, Policy

Model = Policy | Pod | NetworkPolicy
Digest = bytes

_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|\Z)", re.MULTILINE)
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)


def split_documents(text: str) -> list[str] | None:
    """The file's text cut before each `---` line, or None when it has directives (not cut)."""
    if _DIRECTIVE.search(text):
        return None
    starts = [m.start() for m in _DOCUMENT_START.finditer(text)]
    bounds = [0, *(s for s in starts if s > 0), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def digest(chunk: str) -> Digest:
    return hashlib.blake2b(chunk.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class DocumentCache:
    """digest of a document's text -> the models it holds (a List document holds several)."""

    def __init__(self) -> None:
        self._models: dict[Digest, tuple[Model, ...]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._models)

    def get(self, key: Digest) -> tuple[Model, ...] | None:
        return self._models.get(key)

    def replace(self, models: dict[Digest, tuple[Model, ...]], hits: int, misses: int) -> None:
        """After a load that succeeded: keep exactly the documents of that file."""
        self._models = models
        self.hits += hits
        self.misses += misses
