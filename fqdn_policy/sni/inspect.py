"""What a new TCP connection's first bytes present: the TLS server_name, or on port 80 the HTTP Host.

`inspect_first_bytes` is called again with more bytes while the answer is NEED_MORE, and is DONE once
it has decided, with the normalised name or, when none can be vouched for, a reason for the logs.

Bounds: at most MAX_FIRST_BYTES are read. A ClientHello with post-quantum key shares (X25519MLKEM768)
is about 1.8 KB and one with many extensions rarely over 4 KB; 16 KB (one full TLS record) leaves
room for every client seen, while bounding what a flow can make the agent buffer and parse. A
ClientHello or request head not done within it is DONE as "other": the connection is denied rather
than let through unseen. QUIC (UDP) is not inspected.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from fqdn_policy.sni.clienthello import server_name
from fqdn_policy.sni.httphost import http_host
from fqdn_policy.sni.reading import Incomplete, Refused

MAX_FIRST_BYTES = 16384
HTTP_PORT = 80


class State(enum.Enum):
    NEED_MORE = "need_more"  # a valid prefix; its end is not in the bytes yet
    DONE = "done"  # decided what was presented


NEED_MORE = State.NEED_MORE
DONE = State.DONE


class Inspection(NamedTuple):
    state: State
    kind: str  # "tls", "http" or "other"
    name: str | None  # the presented name, normalised; None while NEED_MORE or when none is vouched for
    reason: str | None  # for the logs, when name is None or kind is "other"
    wanted: int | None = None  # while NEED_MORE, the length the bytes must reach, when known


def inspect_first_bytes(data: bytes, port: int) -> Inspection:
    """`data` is the flow's payload from its first byte on; `port` its destination port."""
    data = bytes(data[:MAX_FIRST_BYTES])  # what lies beyond is never read, so it cannot sway a verdict
    kind = "http" if port == HTTP_PORT else "tls"
    try:
        name = http_host(data) if kind == "http" else server_name(data, MAX_FIRST_BYTES)
    except Incomplete as incomplete:
        if len(data) == MAX_FIRST_BYTES:
            what = "HTTP request head" if kind == "http" else "ClientHello"
            return Inspection(DONE, "other", None, f"{what} larger than {MAX_FIRST_BYTES} bytes")
        return Inspection(NEED_MORE, kind, None, None, incomplete.wanted)
    except Refused as refused:
        return Inspection(DONE, refused.kind, None, refused.reason)
    return Inspection(DONE, kind, name, None)
