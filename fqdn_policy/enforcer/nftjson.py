"""The pieces of libnftables JSON the rulesets are built from (libnftables-json(5))."""

from __future__ import annotations

from typing import Any

FAMILY = "inet"
Command = dict[str, Any]

_IP = {4: "ip", 6: "ip6"}
MARK: dict[str, Any] = {"meta": {"key": "mark"}}
CT_MARK: dict[str, Any] = {"ct": {"key": "mark"}}


def set_(table: str, name: str, key: list[str], flags: list[str]) -> Command:
    body: dict[str, Any] = {
        "family": FAMILY,
        "table": table,
        "name": name,
        "type": key[0] if len(key) == 1 else key,
    }
    if flags:
        body["flags"] = flags
    return {"add": {"set": body}}


def field(version: int, name: str) -> dict[str, Any]:
    return {"payload": {"protocol": _IP[version], "field": name}}


def match_set(keys: list[dict[str, Any]], set_ref: str) -> dict[str, Any]:
    left = keys[0] if len(keys) == 1 else {"concat": keys}
    return {"match": {"op": "==", "left": left, "right": f"@{set_ref}"}}


def rule(table: str, chain: str, expr: list[dict[str, Any]], comment: str | None = None) -> Command:
    body: dict[str, Any] = {"family": FAMILY, "table": table, "chain": chain, "expr": expr}
    if comment:
        body["comment"] = comment
    return {"add": {"rule": body}}


def set_mark_bit(mark: int) -> dict[str, Any]:
    """`meta mark set meta mark | mark`."""
    return {"mangle": {"key": MARK, "value": {"|": [MARK, mark]}}}


def clear_mark_bits(bits: int) -> dict[str, Any]:
    """`meta mark set meta mark & ~bits`."""
    return {"mangle": {"key": MARK, "value": {"&": [MARK, 0xFFFFFFFF ^ bits]}}}


def set_ct_mark_bits(bits: int) -> dict[str, Any]:
    """`ct mark set ct mark | bits`."""
    return {"mangle": {"key": CT_MARK, "value": {"|": [CT_MARK, bits]}}}


def bits_equal(left: dict[str, Any], mask: int, value: int) -> dict[str, Any]:
    """`left & mask == value`."""
    return {"match": {"op": "==", "left": {"&": [left, mask]}, "right": value}}


def equals(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}
