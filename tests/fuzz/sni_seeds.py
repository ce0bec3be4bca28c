"""Real first bytes for the SNI inspection tests and fuzzing: ClientHellos from Python's ssl module
(OpenSSL), re-framed into several TLS records, hand-built ClientHellos for the malformed cases, and
HTTP request heads."""

from __future__ import annotations

import contextlib
import itertools
import ssl
import struct
from functools import cache


@cache
def client_hello(
    server_hostname: str | None = "www.example.com",
    maximum_version: ssl.TLSVersion | None = None,
    alpn: tuple[str, ...] = (),
) -> bytes:
    """The first flight of a real TLS client: do_handshake() writes the ClientHello to the outgoing BIO
    and stops for want of the server's answer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum_version is not None:
        context.maximum_version = maximum_version
    if alpn:
        context.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def handshake_message(records: bytes) -> bytes:
    """The handshake bytes the records carry, their headers removed."""
    out = bytearray()
    offset = 0
    while offset < len(records):
        (length,) = struct.unpack_from("!H", records, offset + 3)
        out += records[offset + 5 : offset + 5 + length]
        offset += 5 + length
    return bytes(out)


def reframe(message: bytes, *cuts: int, content_type: int = 22, version: int = 0x0301) -> bytes:
    """`message` as TLS records split at the offsets `cuts`."""
    bounds = [0, *cuts, len(message)]
    return b"".join(
        struct.pack("!BHH", content_type, version, end - start) + message[start:end]
        for start, end in itertools.pairwise(bounds)
    )


def vector(length_size: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def extension(kind: int, data: bytes) -> bytes:
    return struct.pack("!H", kind) + vector(2, data)


def server_name_extension(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + vector(2, name) for name in names)
    return extension(0, vector(2, entries))


def built_client_hello(*extensions: bytes, with_extensions: bool = True, session_id: bytes = b"") -> bytes:
    """One TLS record holding a ClientHello with these extensions, its other fields plausible."""
    body = (
        b"\x03\x03" + bytes(range(32)) + vector(1, session_id) + vector(2, b"\x13\x01\x13\x02") + b"\x01\x00"
    )
    if with_extensions:
        body += vector(2, b"".join(extensions))
    return reframe(b"\x01" + vector(3, body))


def http_request(host: bytes = b"www.example.com", method: bytes = b"GET", target: bytes = b"/") -> bytes:
    return (
        method
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: "
        + host
        + b"\r\nUser-Agent: test/1\r\nAccept: */*\r\n\r\n"
    )


def seeds() -> list[tuple[bytes, int]]:
    """(first bytes, destination port) pairs the fuzzer starts from."""
    tls12 = client_hello("api.example.com", ssl.TLSVersion.TLSv1_2)
    modern = client_hello("www.example.com")
    return [
        (modern, 443),
        (client_hello(None), 443),
        (tls12, 8443),
        (reframe(handshake_message(modern), 100, 300), 443),
        (built_client_hello(server_name_extension(b"a.example"), extension(16, b"\x00\x03\x02h2")), 443),
        (http_request(), 80),
        (b"POST /submit HTTP/1.0\r\nhost:  [2001:db8::1]:8080 \r\nContent-Length: 2\r\n\r\nhi", 80),
        (http_request(b"a.example", b"CONNECT", b"a.example:443"), 80),
    ]
