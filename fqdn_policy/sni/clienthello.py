"""The server_name a TLS ClientHello presents, from the first bytes of a connection.

The ClientHello may be fragmented across several TLS records (RFC 8446 section 5.1 allows any split of
a handshake message; a large one with post-quantum key shares sometimes is) and across TCP segments;
the records' fragments are joined before the message is read. Only records of the handshake type may
carry it: nothing else may be interleaved with a handshake message.

With Encrypted Client Hello (RFC 9849) the outer ClientHello's server_name is the client-facing
server's public name, and the name the client wants is encrypted inside it: the outer name is what is
presented on the wire, so it is what this returns, and nothing is done about ECH.

Each check reads only bytes already present, in stream order, so a prefix that is decided is decided
as the whole stream is: where the segments were split never changes a verdict.
"""

from __future__ import annotations

from fqdn_policy.sni.hostname import host_name
from fqdn_policy.sni.reading import Incomplete, Reader, Refused

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
EXTENSION_SERVER_NAME = 0
NAME_TYPE_HOST_NAME = 0
RECORD_HEADER = 5
MAX_RECORD = 1 << 14  # RFC 8446 section 5.1: a plaintext fragment is at most 2^14 octets
_RECORD_VERSIONS = range(0x0301, 0x0305)
_NOT_TLS = "not a TLS ClientHello"


def server_name(data: bytes, limit: int) -> str:
    """The normalised server_name; Incomplete while `data` is a valid prefix of a ClientHello of at
    most `limit` bytes; Refused otherwise."""
    message = client_hello_message(data, limit)
    return _server_name(_extensions(message))


def client_hello_message(data: bytes, limit: int) -> bytes:
    """The ClientHello handshake message, its 4-octet header included, joined from its records."""
    message = bytearray()
    offset = 0
    while True:
        header = data[offset : offset + RECORD_HEADER]
        _check_record_header(header, first=offset == 0)
        if len(header) < RECORD_HEADER:
            raise Incomplete(None)
        length = int.from_bytes(header[3:5], "big")
        if length == 0 or length > MAX_RECORD:
            raise Refused("tls", f"malformed ClientHello: a record of {length} octets")
        start = offset + RECORD_HEADER
        before = len(message)
        chunk = data[start : start + length]
        message += chunk
        if not message:
            raise Incomplete(start + length)  # an estimate: where the record, and usually it, ends
        if message[0] != HANDSHAKE_CLIENT_HELLO:
            raise Refused("other", _NOT_TLS)
        if len(message) < 4:
            if len(chunk) < length:
                raise Incomplete(start + length)
            offset = start + length
            continue
        needed = 4 + int.from_bytes(message[1:4], "big")
        if len(message) >= needed:
            return bytes(message[:needed])
        rest = needed - before  # message octets from this record's start on
        end = start + rest if rest <= length else start + length + RECORD_HEADER + (rest - length)
        if end > limit:  # the fewest bytes that could hold it, a record header for the rest included
            raise Refused("other", f"ClientHello larger than {limit} bytes")
        if len(chunk) < length:
            raise Incomplete(min(end, start + length))
        offset = start + length


def _check_record_header(header: bytes, first: bool) -> None:
    """Whatever octets of a record header are present must be those of a handshake record."""
    problem = None
    if header and header[0] != CONTENT_HANDSHAKE:
        problem = f"a record of content type {header[0]}"
    elif len(header) >= 2 and header[1] != 3:
        problem = "a record version that is not TLS"
    elif len(header) >= 3 and int.from_bytes(header[1:3], "big") not in _RECORD_VERSIONS:
        problem = f"record version 0x{int.from_bytes(header[1:3], 'big'):04x}"
    if problem is None:
        return
    if first:
        raise Refused("other", _NOT_TLS)
    raise Refused("tls", f"malformed ClientHello: {problem} inside it")


def _extensions(message: bytes) -> bytes:
    """The extensions block of a whole ClientHello; Refused when it has none."""
    body = Reader(message[4:], "tls", "ClientHello")
    if body.uint(2, "legacy_version") >> 8 != 3:
        raise body.malformed("legacy_version is not TLS")
    body.take(32, "random")
    if len(body.vector(1, "legacy_session_id")) > 32:
        raise body.malformed("legacy_session_id longer than 32 octets")
    suites = body.vector(2, "cipher_suites")
    if not suites or len(suites) % 2:
        raise body.malformed("cipher_suites of odd or zero length")
    if not body.vector(1, "legacy_compression_methods"):
        raise body.malformed("no compression method")
    if body.remaining == 0:
        raise Refused("tls", "no server_name extension")  # a ClientHello without extensions (TLS 1.0)
    extensions = body.vector(2, "extensions")
    if body.remaining:
        raise body.malformed("octets after the extensions")
    return extensions


def _server_name(extensions: bytes) -> str:
    reader = Reader(extensions, "tls", "ClientHello")
    seen: set[int] = set()
    found: bytes | None = None
    while reader.remaining:
        kind = reader.uint(2, "extension type")
        data = reader.vector(2, "extension")
        if kind in seen:  # RFC 8446 section 4.2: at most one extension of each type
            raise reader.malformed(f"extension {kind} twice")
        seen.add(kind)
        if kind == EXTENSION_SERVER_NAME:
            found = data
    if found is None:
        raise Refused("tls", "no server_name extension")
    return _host_name(found)


def _host_name(extension: bytes) -> str:
    """The one host_name of a server_name extension (RFC 6066 section 3)."""
    outer = Reader(extension, "tls", "ClientHello")
    names = outer.vector(2, "server_name_list")
    if outer.remaining:
        raise outer.malformed("octets after the server_name_list")
    if not names:
        raise outer.malformed("empty server_name_list")
    reader = Reader(names, "tls", "ClientHello")
    raw: bytes | None = None
    while reader.remaining:
        name_type = reader.uint(1, "name_type")
        name = reader.vector(2, "server name")
        if name_type != NAME_TYPE_HOST_NAME:
            continue  # no other type is defined; each is an opaque vector like host_name
        if raw is not None:
            raise reader.malformed("two host_name entries")
        if not name:
            raise reader.malformed("empty host_name")
        raw = name
    if raw is None:
        raise Refused("tls", "no host_name in server_name")
    normalised = host_name(raw)
    if normalised is None:
        raise Refused("tls", "server_name is not a host name")
    return normalised
