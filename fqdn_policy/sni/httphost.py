"""The Host an HTTP/1.x request presents, from the first bytes of a connection.

Read strictly, because the server reads too and any leniency here is a place where the two could
disagree on the name: CRLF line ends only (a bare CR or LF is refused: a server taking LF alone as a
line end would see a header this did not), no obsolete line folding, no space before a header's
colon, exactly one Host. A request target in absolute form (`GET http://name/ HTTP/1.1`) or authority
form (CONNECT) names the host itself and a server must prefer it to Host (RFC 9112 section 3.2.2), so it
must name the same one. An HTTP/2 prior-knowledge preface is not read (its names are in HPACK-encoded
HEADERS frames): it is "other".
"""

from __future__ import annotations

import re

from fqdn_policy.sni.hostname import authority_host
from fqdn_policy.sni.reading import Incomplete, Refused

METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")
HTTP2_REQUEST_LINE = b"PRI * HTTP/2.0"  # RFC 9113 section 3.4: the preface's first line
_STARTS = (*METHODS, b"PRI")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: no space, no control octet, no raw UTF-8
_VERSION = re.compile(rb"HTTP/1\.[0-9]")
_FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
_OWS = b" \t"
_NOT_HTTP = "not an HTTP request"


def http_host(data: bytes) -> str:
    """The normalised Host; Incomplete while `data` is a valid prefix of a request head, Refused when
    the request names no host this can vouch for or is not an HTTP/1.x request."""
    method, target, offset = _request_line(data)
    host = _host_header(data, offset)
    name = authority_host(host)
    if name is None:
        raise Refused("http", "Host is not a host name")
    named = _target_host(method, target)
    if named is not None and named != name:
        raise Refused("http", "the request target names another host than Host")
    return name


def _request_line(data: bytes) -> tuple[bytes, bytes, int]:
    """(method, target, offset past the line's CRLF) of `METHOD SP target SP HTTP/1.x CRLF`."""
    end = data.find(b"\r\n")
    complete = end >= 0
    line = data[:end] if complete else data.removesuffix(b"\r")
    parts = line.split(b" ", 2)
    if len(parts) == 1:
        if not complete and any(start.startswith(parts[0]) for start in _STARTS):
            raise Incomplete(None)
        raise Refused("other", _NOT_HTTP)
    method, target = parts[0], parts[1]
    target_so_far = not target and len(parts) == 2 and not complete  # `GET `, the target yet to come
    if method not in _STARTS or not (_TARGET.fullmatch(target) or target_so_far):
        raise Refused("other", _NOT_HTTP)
    if len(parts) == 2 or not complete:
        if not complete and _version_prefix(parts[2] if len(parts) == 3 else b"", method):
            raise Incomplete(None)
        raise Refused("other", _NOT_HTTP)
    if line == HTTP2_REQUEST_LINE:
        raise Refused("other", "HTTP/2 prior-knowledge preface")
    if method == b"PRI" or not _VERSION.fullmatch(parts[2]):
        raise Refused("other", _NOT_HTTP)
    return method, target, end + 2


def _version_prefix(version: bytes, method: bytes) -> bool:
    """Whether `version` can still become HTTP/1.x (or, after PRI, the HTTP/2 preface's HTTP/2.0)."""
    if method == b"PRI":
        return b"HTTP/2.0".startswith(version)
    return b"HTTP/1.".startswith(version[:7]) and (len(version) <= 7 or bool(_VERSION.fullmatch(version)))


def _host_header(data: bytes, offset: int) -> bytes:
    """The one Host field's value, its surrounding whitespace removed, from the header lines."""
    host: bytes | None = None
    while True:
        end = data.find(b"\r\n", offset)
        if end < 0:
            raise Incomplete(None)
        line = data[offset:end]
        if not line:
            break
        if b"\r" in line or b"\n" in line:
            raise Refused("http", "a bare CR or LF in the request head")
        if line[0] in _OWS:
            raise Refused("http", "obsolete line folding")
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise Refused("http", "a malformed header line")
        if name.lower() == b"host":
            if host is not None:
                raise Refused("http", "two Host headers")
            host = value.strip(_OWS)
        offset = end + 2
    if host is None:
        raise Refused("http", "no Host header")
    if not host:
        raise Refused("http", "an empty Host header")
    return host


def _target_host(method: bytes, target: bytes) -> str | None:
    """The host a request target names itself, if it does; Refused when it names one unreadably."""
    if method == b"CONNECT":
        authority = target
    elif b"://" in target and not target.startswith(b"/"):
        authority = re.split(rb"[/?#]", target.split(b"://", 1)[1], maxsplit=1)[0]
    else:
        return None
    if b"@" in authority:  # userinfo: deprecated, and a classic way to make a URL look like another
        raise Refused("http", "userinfo in the request target")
    name = authority_host(authority)
    if name is None:
        raise Refused("http", "the request target's host is not a host name")
    return name
