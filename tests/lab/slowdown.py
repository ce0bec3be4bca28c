"""How long the lab waits for its own processes, on a machine slower than this one.

FQDN_LAB_SLOWDOWN (default 1) multiplies the lab's patience: how long it waits for the agent or the
fake internet to come up or stop, and for a probe process to finish. The VM lane sets it (under TCG
every Python process starts several times slower; docs/kernels.md). It never stretches a bound that
a test asserts about the product (a reload within 2 s, a drop within 1 s): those stay as written.
"""

from __future__ import annotations

import os


def slowdown() -> float:
    text = os.environ.get("FQDN_LAB_SLOWDOWN", "1")
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"FQDN_LAB_SLOWDOWN: {text!r} is not a number (e.g. 1 or 6)") from None
    if factor < 1:
        raise ValueError(f"FQDN_LAB_SLOWDOWN: {text!r} is below 1; it only ever lengthens waits")
    return factor


def patience(seconds: float) -> float:
    """`seconds` as the lab's wait for its own processes, scaled by FQDN_LAB_SLOWDOWN."""
    return seconds * slowdown()
