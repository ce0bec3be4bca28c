"""The presented name, normalised for policy: lower case, one trailing dot dropped, port and IPv6
brackets removed. Only host name characters make a name; anything else (a space, a NUL, raw UTF-8, an
empty label) is None, so no odd spelling can pose as an allowed name. IDNA A-labels (xn--) stay as
sent: policy names are written in that form too, and decoding here would add a second spelling."""

from __future__ import annotations

import ipaddress
import re

MAX_NAME = 253  # RFC 1035's 255 octets on the wire, less the length octet and the root
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def host_name(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    if text.endswith("."):
        text = text[:-1]
    if len(text) > MAX_NAME or not _HOSTNAME.fullmatch(text):
        return None
    return text


def authority_host(raw: bytes) -> str | None:
    """The host of an HTTP authority `host[:port]`; an IPv6 literal in brackets comes back compressed."""
    if raw.startswith(b"["):
        close = raw.find(b"]")
        if close < 0 or not _is_port(raw[close + 1 :], bracketed=True):
            return None
        literal = raw[1:close]
        if b"%" in literal:  # a zone identifier names a link, not a destination beyond the node
            return None
        try:
            return str(ipaddress.IPv6Address(literal.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            return None
    host, colon, port = raw.partition(b":")
    if colon and not _is_port(port, bracketed=False):
        return None
    return host_name(host)


def _is_port(rest: bytes, bracketed: bool) -> bool:
    """An empty port is allowed (RFC 3986: `host:`); after a bracket the colon itself may be absent."""
    if bracketed:
        if not rest:
            return True
        if not rest.startswith(b":"):
            return False
        rest = rest[1:]
    return not rest or rest.isdigit()  # bytes.isdigit() is ASCII digits only
