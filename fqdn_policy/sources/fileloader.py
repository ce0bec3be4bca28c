"""Standalone mode's policy source: one YAML file of FQDNNetworkPolicy, Pod and NetworkPolicy documents.

Errors name the file, the line, the document (index, kind, namespace/name) and the field, and the file
is accepted or refused whole: a caller that keeps its last good PolicySet never runs half a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

import yaml

from fqdn_policy.policy.model import NetworkPolicy, Pod, Policy, PolicySet
from fqdn_policy.policy.spec.breadth import policy_set_warnings
from fqdn_policy.policy.spec.documents import InvalidDocument, pod_from_document, policy_from_document
from fqdn_policy.policy.spec.networkpolicy import (
    NETWORK_POLICY_KIND,
    network_policy_from_document,
)
from fqdn_policy.policy.spec.schema import POLICY_KIND
from fqdn_policy.policy.spec.schemacheck import Path, format_path
from fqdn_policy.sources.documentcache import Digest, DocumentCache, Model, digest, split_documents

LIST_KINDS = ("List", "PodList", f"{POLICY_KIND}List", f"{NETWORK_POLICY_KIND}List")
# libyaml's parser when PyYAML was built with it; its nodes carry line marks too.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class FileProblem:
    file: str
    line: int | None
    document: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.document}: {self.field}: {self.message}"


class PolicyFileError(Exception):
    def __init__(self, problems: list[FileProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load_file(path: str | FilePath, cache: DocumentCache | None = None) -> PolicySet:
    path = FilePath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyFileError([FileProblem(str(path), None, "file", "(file)", str(error))]) from error
    return load_text(text, str(path), cache)


def load_text(text: str, filename: str = "<policy>", cache: DocumentCache | None = None) -> PolicySet:
    """The file's PolicySet, or PolicyFileError naming every problem.

    With a cache, documents whose text is unchanged since the last load are not parsed again
    (fqdn_policy.sources.documentcache); a file with any problem is always parsed whole, for its errors."""
    if cache is not None:
        loaded = _load_cached(text, filename, cache)
        if loaded is not None:
            return loaded
    return _load_whole(text, filename)


def _load_whole(text: str, filename: str) -> PolicySet:
    """Parse with libyaml straight to Python objects; line numbers are worked out only for a file
    that has problems (building them for every node cost most of a 1,000-policy load)."""
    try:
        docs = list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise PolicyFileError(
            [FileProblem(filename, line, "file", "(yaml)", _yaml_message(error))]
        ) from error

    models: list[Model] = []
    found: list[tuple[int, Path, str, str, str]] = []  # document, full path, label, field, message
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        for item_path, item in _flatten_lists(doc):
            label = _document_label(index, item_path, item)
            try:
                models.append(_model(item))
            except UnknownKind as error:
                found.append((index, (*item_path, "kind"), label, "kind", str(error)))
            except InvalidDocument as error:
                for p in error.problems:
                    found.append((index, (*item_path, *p.path), label, p.field, p.message))
    problems = _locate(text, filename, found) if found else []
    return _policy_set(filename, models, problems)


def _load_cached(text: str, filename: str, cache: DocumentCache) -> PolicySet | None:
    """None when the file cannot be cut into documents or a changed one has any problem."""
    chunks = split_documents(text)
    if chunks is None:
        return None
    kept: dict[Digest, tuple[Model, ...]] = {}
    models: list[Model] = []
    hits = misses = 0
    for chunk in chunks:
        key = digest(chunk)
        found = kept.get(key) or cache.get(key)
        if found is None:
            found = _chunk_models(chunk)
            if found is None:
                return None
            misses += 1
        else:
            hits += 1
        kept[key] = found
        models += found
    loaded = _policy_set(filename, models, [])
    cache.replace(kept, hits, misses)
    return loaded


def _chunk_models(chunk: str) -> tuple[Model, ...] | None:
    try:
        docs = list(yaml.load_all(chunk, Loader=_LOADER))
        return tuple(_model(item) for doc in docs if doc is not None for _, item in _flatten_lists(doc))
    except (yaml.YAMLError, UnknownKind, InvalidDocument):
        return None


def pattern_warnings(policy_set: PolicySet, filename: str, text: str | None = None) -> list[FileProblem]:
    """The loaded file's patterns that match more than they seem (policy.spec.breadth), named as errors
    are. With the file's text each gets its document number and line; that parses the file again,
    so the agent's reloads leave it out and name the document by kind and key only."""
    found = policy_set_warnings(policy_set)
    if not found:
        return []
    if text is None:
        return [
            FileProblem(filename, None, f"{POLICY_KIND} {policy.key}", format_path(path), message)
            for policy, path, message in found
        ]
    where: dict[str, tuple[int, Path, str]] = {}
    for index, doc in enumerate(yaml.load_all(text, Loader=_LOADER), start=1):
        for item_path, item in _flatten_lists(doc) if doc is not None else ():
            if isinstance(item, dict) and item.get("kind") == POLICY_KIND:
                meta = item.get("metadata") or {}
                key = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
                where.setdefault(key, (index, item_path, _document_label(index, item_path, item)))
    located = []
    for policy, path, message in found:
        index, item_path, label = where[policy.key]
        located.append((index, (*item_path, *path), label, format_path(path), message))
    return _locate(text, filename, located)


class UnknownKind(ValueError):
    pass


def _model(item: Any) -> Model:
    kind = item.get("kind") if isinstance(item, dict) else None
    if kind == POLICY_KIND:
        return policy_from_document(item)
    if kind == "Pod":
        return pod_from_document(item)
    if kind == NETWORK_POLICY_KIND:
        return network_policy_from_document(item)
    raise UnknownKind(
        f"{kind!r} is not a known kind; expected {POLICY_KIND}, Pod, {NETWORK_POLICY_KIND} or a List"
    )


def _policy_set(filename: str, models: list[Model], problems: list[FileProblem]) -> PolicySet:
    policies = [m for m in models if isinstance(m, Policy)]
    pods = [m for m in models if isinstance(m, Pod)]
    network_policies = [m for m in models if isinstance(m, NetworkPolicy)]
    problems = problems + _duplicates(filename, policies, pods)
    if problems:
        raise PolicyFileError(problems)
    return PolicySet(policies=tuple(policies), pods=tuple(pods), network_policies=tuple(network_policies))


def _locate(text: str, filename: str, found: list[tuple[int, Path, str, str, str]]) -> list[FileProblem]:
    nodes = [node for node in yaml.compose_all(text, Loader=_LOADER)]
    lines = {i: _line_index(node) for i, node in enumerate(nodes, start=1) if node is not None}
    return [
        FileProblem(filename, _nearest_line(lines.get(index, {}), path), label, field, message)
        for index, path, label, field, message in found
    ]


def _flatten_lists(doc: Any, base: Path = ()) -> list[tuple[Path, Any]]:
    if isinstance(doc, dict) and doc.get("kind") in LIST_KINDS and isinstance(doc.get("items"), list):
        out: list[tuple[Path, Any]] = []
        for i, item in enumerate(doc["items"]):
            out += _flatten_lists(item, (*base, "items", i))
        return out
    return [(base, doc)]


def _document_label(index: int, item_path: Path, item: Any) -> str:
    label = f"document {index}"
    if item_path:
        label += f" {format_path(item_path)}"
    if isinstance(item, dict):
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        name = meta.get("name")
        kind = item.get("kind", "?")
        if name:
            return f"{label} ({kind} {meta.get('namespace', 'default')}/{name})"
        return f"{label} ({kind})"
    return label


def _duplicates(filename: str, policies: list[Policy], pods: list[Pod]) -> list[FileProblem]:
    problems = []
    seen: set[str] = set()
    for policy in policies:
        if policy.key in seen:
            problems.append(
                FileProblem(filename, None, f"{POLICY_KIND} {policy.key}", "metadata.name", "defined twice")
            )
        seen.add(policy.key)
    owner: dict[str, str] = {}
    pod_keys: set[str] = set()
    for pod in pods:
        if pod.key in pod_keys:
            problems.append(FileProblem(filename, None, f"Pod {pod.key}", "metadata.name", "defined twice"))
        pod_keys.add(pod.key)
        for ip in pod.ips:
            if ip in owner and owner[ip] != pod.key:
                problems.append(
                    FileProblem(
                        filename, None, f"Pod {pod.key}", "status.podIPs", f"{ip} is also {owner[ip]}'s"
                    )
                )
            owner[ip] = pod.key
    return problems


def _line_index(node: yaml.Node, path: Path = ()) -> dict[Path, int]:
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            for sub, line in _line_index(value_node, (*path, key)).items():
                lines.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i)))
    return lines


def _nearest_line(lines: dict[Path, int], path: Path) -> int | None:
    """The line of the field, or of its closest parent when the field is missing."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]


def _yaml_message(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    return " ".join(str(p) for p in (context, problem) if p) or str(error)
