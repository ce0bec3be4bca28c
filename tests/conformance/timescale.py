"""One clock for a row: its TTLs, sleeps, holds and the agent's --min-ttl, scaled together.

A TTL row states a relation between times (a 3 s answer refreshed after 2 s still allows a connect
at 4 s). Under TCG (the VM lane, FQDN_LAB_SLOWDOWN=6) starting the probe that connects takes longer
than the row's whole timeline, so the row would test the emulator, not the agent. Multiplying every
time in the row by the same factor keeps each relation exactly as written; at factor 1 (this
machine) the row is unchanged. Only times the row itself chooses are scaled: the drop timeout and the
bounds the product promises (tests/lab/slowdown.py) are not.
"""

from __future__ import annotations

import math
from typing import Any

from tests.lab.slowdown import slowdown

MIN_TTL = 1


def seconds(value: float, factor: float) -> float:
    return value * factor


def ttl(value: int, factor: float) -> int:
    """A TTL on the wire is a whole number of seconds; rounding up never shortens a relation's side."""
    return math.ceil(value * factor)


def scale_zone(zone: dict[str, dict[str, Any]], factor: float) -> dict[str, dict[str, Any]]:
    return {
        name: ({**records, "ttl": ttl(records["ttl"], factor)} if "ttl" in records else dict(records))
        for name, records in zone.items()
    }


def scale_step(step: dict[str, Any], factor: float) -> dict[str, Any]:
    scaled = dict(step)
    if "sleep" in step:
        scaled["sleep"] = seconds(step["sleep"], factor)
    if "hold" in step:
        scaled["seconds"] = seconds(step["seconds"], factor)
    if "zone" in step:
        scaled["zone"] = scale_zone(step["zone"], factor)
    return scaled


def scale_case(case: dict[str, Any], factor: float) -> dict[str, Any]:
    scaled = dict(case)
    if "zone" in case:
        scaled["zone"] = scale_zone(case["zone"], factor)
    scaled["steps"] = [scale_step(step, factor) for step in case.get("steps", [])]
    return scaled


def base_flags(factor: float) -> tuple[str, ...]:
    return ("--min-ttl", str(ttl(MIN_TTL, factor)))


def lab_factor() -> float:
    return slowdown()
