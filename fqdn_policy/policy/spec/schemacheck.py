"""Validates a parsed document against the OpenAPI subset used in fqdn_policy.policy.spec.schema.

Hand-written rather than a JSON-Schema library: the subset is small, and every message must name the
field path and say what would be valid, which generic validators word poorly for oneOf and enums.
Unknown fields are errors (a typo like `matchLabel` must not silently select every pod) unless the
schema node carries `x-fqdn-open`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fqdn_policy.policy.match import names

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    path: Path
    message: str

    @property
    def field(self) -> str:
        return format_path(self.path)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(document)"


def _check_selector_requirement(value: dict[str, Any]) -> str | None:
    operator, values = value.get("operator"), value.get("values")
    if operator in ("In", "NotIn") and not values:
        return f"operator {operator} needs a non-empty `values` list"
    if operator in ("Exists", "DoesNotExist") and values:
        return f"operator {operator} takes no `values`"
    return None


def _check_ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 or IPv6 address"
    return None


def _check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} is not a CIDR range such as 203.0.113.0/24 or 2001:db8::/32"
    return None


def _check_int_or_name(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"must be a port number or a port name, got {_describe(value)}"
    return None


def _semantic(check: Callable[[str], object]) -> Callable[[Any], str | None]:
    def run(value: Any) -> str | None:
        try:
            check(value)
        except names.InvalidName as error:
            return str(error)
        return None

    return run


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "name": _semantic(names.validate_name),
    "pattern": _semantic(names.validate_pattern),
    "selector-requirement": _check_selector_requirement,
    "ip": _check_ip,
    "cidr": _check_cidr,
    "int-or-name": _check_int_or_name,
}

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def validate(value: Any, schema: dict[str, Any], path: Path = ()) -> list[Problem]:
    """All problems found, in document order; an empty list means valid."""
    expected = schema.get("type")
    if expected and not _TYPES[expected](value):
        return [Problem(path, f"must be {_article(expected)} {expected}, got {_describe(value)}")]
    problems: list[Problem] = []
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(c) for c in schema["enum"])
        problems.append(Problem(path, f"{value!r} is not one of: {choices}"))
    if isinstance(value, str):
        problems += _string_problems(value, schema, path)
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(Problem(path, f"{value} is below the minimum {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(Problem(path, f"{value} is above the maximum {schema['maximum']}"))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(Problem(path, f"needs at least {schema['minItems']} item(s)"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(Problem(path, f"has {len(value)} items; the limit is {schema['maxItems']}"))
        item_schema = schema.get("items")
        if item_schema:
            for index, item in enumerate(value):
                problems += validate(item, item_schema, (*path, index))
    if isinstance(value, dict):
        problems += _object_problems(value, schema, path)
    check = schema.get("x-fqdn-check")
    if check and not problems:
        message = _CHECKS[check](value)
        if message:
            problems.append(Problem(path, message))
    return problems


def _string_problems(value: str, schema: dict[str, Any], path: Path) -> list[Problem]:
    problems = []
    if len(value) < schema.get("minLength", 0):
        problems.append(Problem(path, "must not be empty"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(Problem(path, f"is {len(value)} characters; the limit is {schema['maxLength']}"))
    # The semantic check words the same failure better, so the regex speaks only when there is none.
    if "pattern" in schema and "x-fqdn-check" not in schema and not re.search(schema["pattern"], value):
        problems.append(Problem(path, f"{value!r} does not match {schema['pattern']}"))
    return problems


def _object_problems(value: dict[str, Any], schema: dict[str, Any], path: Path) -> list[Problem]:
    problems = []
    properties: dict[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            problems.append(Problem((*path, key), "is required"))
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            problems += validate(item, properties[key], (*path, key))
        elif isinstance(extra, dict):
            problems += validate(item, extra, (*path, key))
        elif not schema.get("x-fqdn-open") and properties:
            known = ", ".join(properties)
            problems.append(Problem((*path, key), f"unknown field; known fields here: {known}"))
    one_of = schema.get("oneOf")
    if one_of:
        present = [alt["required"][0] for alt in one_of if all(k in value for k in alt["required"])]
        wanted = " or ".join(f"`{alt['required'][0]}`" for alt in one_of)
        if len(present) != 1:
            got = "none" if not present else " and ".join(present)
            problems.append(Problem(path, f"needs exactly one of {wanted}, got {got}"))
    return problems


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"[:80]
