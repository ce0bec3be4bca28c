"""TLS ClientHello and HTTP Host inspection of a connection's first bytes (fqdn_policy.sni.inspect)."""

import bisect
import ssl

import pytest

from fqdn_policy.sni.inspect import DONE, MAX_FIRST_BYTES, NEED_MORE, inspect_first_bytes
from fqdn_policy.sni.reassembly import FirstBytes
from tests.fuzz.sni_seeds import (
    built_client_hello,
    client_hello,
    extension,
    handshake_message,
    http_request,
    reframe,
    server_name_extension,
    vector,
)

HELLO = client_hello("www.example.com")


def fed(pieces, port=443):
    """The inspection after each piece, the pieces given to FirstBytes as consecutive segments."""
    flow = FirstBytes()
    seq = 1000
    results = []
    for piece in pieces:
        assert flow.add(seq, piece)
        seq += len(piece)
        results.append(inspect_first_bytes(flow.data, port))
    return results


# --- TLS ---------------------------------------------------------------------------------------------


def test_a_real_client_hello_presents_its_server_name():
    assert inspect_first_bytes(HELLO, 443) == (DONE, "tls", "www.example.com", None, None)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_the_name_is_normalised_to_lower_case(version):
    result = inspect_first_bytes(client_hello("API.Example.COM", version), 8443)
    assert (result.state, result.kind, result.name) == (DONE, "tls", "api.example.com")


def test_a_client_hello_without_server_name():
    assert inspect_first_bytes(client_hello(None), 443) == (
        DONE,
        "tls",
        None,
        "no server_name extension",
        None,
    )


def test_every_split_in_two_is_need_more_then_the_same_name():
    for cut in range(1, len(HELLO)):
        first, second = fed([HELLO[:cut], HELLO[cut:]])
        assert first.state is NEED_MORE and first.kind == "tls", cut
        assert second == (DONE, "tls", "www.example.com", None, None), cut


def test_splits_in_three_are_need_more_twice_then_the_same_name():
    for i in range(1, len(HELLO) - 1, 7):
        for j in range(i + 1, len(HELLO), 11):
            results = fed([HELLO[:i], HELLO[i:j], HELLO[j:]])
            assert [r.state for r in results] == [NEED_MORE, NEED_MORE, DONE], (i, j)
            assert results[-1].name == "www.example.com"


def test_wanted_is_the_record_end_once_the_record_header_is_in():
    assert inspect_first_bytes(HELLO[:4], 443).wanted is None
    for cut in (5, 9, 100, len(HELLO) - 1):
        assert inspect_first_bytes(HELLO[:cut], 443).wanted == len(HELLO)


def test_a_client_hello_fragmented_across_two_records_at_every_boundary():
    message = handshake_message(HELLO)
    for cut in range(1, len(message)):
        data = reframe(message, cut)
        assert inspect_first_bytes(data, 443).name == "www.example.com", cut
        assert all(inspect_first_bytes(data[:n], 443).state is NEED_MORE for n in range(0, len(data), 23))


def test_wanted_across_records_is_exact_once_the_last_record_is_announced():
    message = handshake_message(HELLO)
    data = reframe(message, 200)
    assert inspect_first_bytes(data[:100], 443).wanted == 5 + 200  # the end of the first record
    assert inspect_first_bytes(data[:210], 443).wanted == len(data)


def test_a_client_hello_in_many_small_records():
    message = handshake_message(HELLO)
    data = reframe(message, *range(1, len(message), 3))
    assert inspect_first_bytes(data, 443).name == "www.example.com"


def test_bytes_after_the_client_hello_do_not_change_the_verdict():
    early_data = b"\x17\x03\x03\x00\x05hello"
    assert inspect_first_bytes(HELLO + early_data, 443).name == "www.example.com"


def test_a_real_client_hello_over_the_bound_is_other_as_soon_as_its_length_is_read():
    big = client_hello("www.example.com", alpn=("p" * 255,) * 70)  # OpenSSL sends it in two records
    assert len(big) > MAX_FIRST_BYTES
    reason = f"ClientHello larger than {MAX_FIRST_BYTES} bytes"
    assert inspect_first_bytes(big, 443) == (DONE, "other", None, reason, None)
    assert inspect_first_bytes(big[:9], 443) == (DONE, "other", None, reason, None)
    assert inspect_first_bytes(big[:8], 443).state is NEED_MORE


def test_a_client_hello_of_ten_kilobytes_is_read():
    hello = client_hello("www.example.com", alpn=("p" * 200,) * 50)
    assert 8192 < len(hello) < MAX_FIRST_BYTES
    assert inspect_first_bytes(hello, 443).name == "www.example.com"


def test_a_client_hello_in_many_records_is_other_once_it_cannot_fit_the_bound():
    """Each record header adds five octets; once the fewest bytes that could finish the ClientHello
    are over the bound it is decided, before the bound is read."""
    message = handshake_message(client_hello("www.example.com", alpn=("p" * 200,) * 15))
    data = reframe(message, *range(1, len(message), 1))  # one octet a record: 6 bytes per octet
    assert len(data) > MAX_FIRST_BYTES
    reason = f"ClientHello larger than {MAX_FIRST_BYTES} bytes"
    decided = bisect.bisect(
        range(len(data)), False, key=lambda n: inspect_first_bytes(data[:n], 443).state is DONE
    )
    assert inspect_first_bytes(data[: decided - 1], 443).state is NEED_MORE
    assert 6 * len(message) > MAX_FIRST_BYTES > decided
    assert inspect_first_bytes(data[:decided], 443) == (DONE, "other", None, reason, None)
    assert inspect_first_bytes(data, 443) == (DONE, "other", None, reason, None)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "not a TLS ClientHello"),
        (b"\x17", "not a TLS ClientHello"),
        (b"\x16\x02", "not a TLS ClientHello"),
        (b"\x16\x03\x00", "not a TLS ClientHello"),  # SSL 3.0
        (b"\x16\x03\x05", "not a TLS ClientHello"),
        (b"\x16\x03\x01\x00\x04\x02", "not a TLS ClientHello"),  # a ServerHello
        (b"\x80\x2e\x01\x00\x02", "not a TLS ClientHello"),  # an SSLv2-compatible hello
    ],
)
def test_what_is_not_a_client_hello_is_other_from_its_first_octets(data, reason):
    assert inspect_first_bytes(data, 443) == (DONE, "other", None, reason, None)


def test_the_bytes_of_a_valid_prefix_are_need_more():
    for data in (
        b"",
        b"\x16",
        b"\x16\x03",
        b"\x16\x03\x01\x02",
        b"\x16\x03\x01\x02\x00",
        b"\x16\x03\x01\x02\x00\x01",
    ):
        assert inspect_first_bytes(data, 443).state is NEED_MORE


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"\x16\x03\x01\x00\x00", "a record of 0 octets"),
        (b"\x16\x03\x01\x40\x01", "a record of 16385 octets"),
        (reframe(handshake_message(HELLO), 50)[:55] + b"\x15", "a record of content type 21 inside it"),
        (
            reframe(handshake_message(HELLO), 50, version=0x0303)[:55] + b"\x16\x02",
            "a record version that is not TLS inside it",
        ),
    ],
)
def test_malformed_records(data, detail):
    assert inspect_first_bytes(data, 443) == (DONE, "tls", None, f"malformed ClientHello: {detail}", None)


def test_a_hand_built_client_hello_is_read():
    data = built_client_hello(extension(10, b"\x00\x02\x00\x1d"), server_name_extension(b"a.example"))
    assert inspect_first_bytes(data, 443).name == "a.example"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"a.example.", "a.example"),
        (b"xn--9ca.example", "xn--9ca.example"),
        (b"A_b-1.Example", "a_b-1.example"),
    ],
)
def test_server_names_are_normalised(raw, name):
    assert inspect_first_bytes(built_client_hello(server_name_extension(raw)), 443).name == name


@pytest.mark.parametrize(
    ("extensions", "reason"),
    [
        (
            (server_name_extension(b"a.example", b"b.example"),),
            "malformed ClientHello: two host_name entries",
        ),
        ((server_name_extension(b""),), "malformed ClientHello: empty host_name"),
        ((extension(0, b""),), "malformed ClientHello: server_name_list runs past the end"),
        ((extension(0, vector(2, b"")),), "malformed ClientHello: empty server_name_list"),
        (
            (extension(0, vector(2, b"\x00\x00\x01a") + b"x"),),
            "malformed ClientHello: octets after the server_name_list",
        ),
        (
            (extension(0, vector(2, b"\x00\x00\x09a")),),
            "malformed ClientHello: server name runs past the end",
        ),
        (
            (server_name_extension(b"a"), server_name_extension(b"b")),
            "malformed ClientHello: extension 0 twice",
        ),
        ((server_name_extension(b"a.example", name_type=1),), "no host_name in server_name"),
        ((extension(16, b"\x00\x03\x02h2"),), "no server_name extension"),
        ((server_name_extension(b"caf\xc3\xa9.example"),), "server_name is not a host name"),
        ((server_name_extension(b"a b.example"),), "server_name is not a host name"),
        ((server_name_extension(b"a..example"),), "server_name is not a host name"),
        ((server_name_extension(b"a\x00.example"),), "server_name is not a host name"),
        ((server_name_extension(b"a" * 254),), "server_name is not a host name"),
    ],
)
def test_server_name_extensions_that_name_no_one_host(extensions, reason):
    assert inspect_first_bytes(built_client_hello(*extensions), 443) == (DONE, "tls", None, reason, None)


def test_an_unknown_name_type_beside_the_host_name_is_skipped():
    entries = b"\x01" + vector(2, b"other") + b"\x00" + vector(2, b"a.example")
    assert inspect_first_bytes(built_client_hello(extension(0, vector(2, entries))), 443).name == "a.example"


def test_a_client_hello_without_extensions_has_no_server_name():
    data = built_client_hello(with_extensions=False)
    assert inspect_first_bytes(data, 443).reason == "no server_name extension"


SUITE = vector(2, b"\x13\x01")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"\x02\x03", "legacy_version is not TLS"),
        (b"\x03\x03\x00", "random runs past the end"),
        (b"\x03\x03" + bytes(32) + b"\x21", "legacy_session_id runs past the end"),
        (b"\x03\x03" + bytes(32) + vector(1, bytes(33)), "legacy_session_id longer than 32 octets"),
        (b"\x03\x03" + bytes(32) + b"\x00\x00\x00", "cipher_suites of odd or zero length"),
        (b"\x03\x03" + bytes(32) + b"\x00\x00\x01\x13\x01\x00", "cipher_suites of odd or zero length"),
        (b"\x03\x03" + bytes(32) + b"\x00" + SUITE + b"\x00", "no compression method"),
        (b"\x03\x03" + bytes(32) + b"\x00" + SUITE + b"\x01\x00\x00\x00\x00", "octets after the extensions"),
        (b"\x03\x03" + bytes(32) + b"\x00" + SUITE + b"\x01\x00\x00\x05\x00", "extensions runs past the end"),
        (
            b"\x03\x03" + bytes(32) + b"\x00" + SUITE + b"\x01\x00\x00\x01\x00",
            "extension type runs past the end",
        ),
    ],
)
def test_malformed_client_hello_bodies(body, detail):
    result = inspect_first_bytes(reframe(b"\x01" + vector(3, body)), 443)
    assert result == (DONE, "tls", None, f"malformed ClientHello: {detail}", None)


# --- HTTP --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"PATCH"]
)
def test_an_http_request_presents_its_host(method):
    assert inspect_first_bytes(http_request(b"Www.Example.com", method), 80) == (
        DONE,
        "http",
        "www.example.com",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("line", "name"),
    [
        (b"Host: a.example", "a.example"),
        (b"hOsT:a.example", "a.example"),
        (b"HOST: \t a.example \t", "a.example"),
        (b"Host: a.example:8080", "a.example"),
        (b"Host: a.example.:80", "a.example"),
        (b"Host: a.example:", "a.example"),
        (b"Host: [2001:DB8:0::1]:8080", "2001:db8::1"),
        (b"Host: [::1]", "::1"),
        (b"Host: xn--9ca.example", "xn--9ca.example"),
    ],
)
def test_host_headers_are_normalised(line, name):
    data = b"GET /index.html?q=1 HTTP/1.1\r\nAccept: */*\r\n" + line + b"\r\n\r\n"
    assert inspect_first_bytes(data, 80).name == name


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n", "two Host headers"),
        (b"GET / HTTP/1.0\r\nAccept: */*\r\n", "no Host header"),
        (b"GET / HTTP/1.1\r\nHost:  \r\n", "an empty Host header"),
        (b"GET / HTTP/1.1\r\nX: a\nHost: a.example\r\n", "a bare CR or LF in the request head"),
        (b"GET / HTTP/1.1\r\nX: a\rHost: a.example\r\n", "a bare CR or LF in the request head"),
        (b"GET / HTTP/1.1\r\nHost: a.example\r\n b.example\r\n", "obsolete line folding"),
        (b"GET / HTTP/1.1\r\nHost : a.example\r\n", "a malformed header line"),
        (b"GET / HTTP/1.1\r\nHost a.example\r\n", "a malformed header line"),
        (b"GET / HTTP/1.1\r\nHost: a b.example\r\n", "Host is not a host name"),
        (b"GET / HTTP/1.1\r\nHost: a.example:80:80\r\n", "Host is not a host name"),
        (b"GET / HTTP/1.1\r\nHost: a.example:http\r\n", "Host is not a host name"),
        (b"GET / HTTP/1.1\r\nHost: 2001:db8::1\r\n", "Host is not a host name"),
        (b"GET / HTTP/1.1\r\nHost: [fe80::1%eth0]\r\n", "Host is not a host name"),
        (b"GET / HTTP/1.1\r\nHost: [::1]x\r\n", "Host is not a host name"),
        (b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9.example\r\n", "Host is not a host name"),
        (
            b"GET http://b.example/ HTTP/1.1\r\nHost: a.example\r\n",
            "the request target names another host than Host",
        ),
        (
            b"CONNECT b.example:443 HTTP/1.1\r\nHost: a.example\r\n",
            "the request target names another host than Host",
        ),
        (
            b"GET http://a.example@b.example/ HTTP/1.1\r\nHost: a.example\r\n",
            "userinfo in the request target",
        ),
        (b"GET http://a b/ HTTP/1.1\r\nHost: a.example\r\n", "not an HTTP request"),
        (b"GET http://[zz]/ HTTP/1.1\r\nHost: a.example\r\n", "the request target's host is not a host name"),
    ],
)
def test_request_heads_that_present_no_one_host(head, reason):
    assert inspect_first_bytes(head + b"\r\n", 80) == (
        DONE,
        "http" if "HTTP" not in reason else "other",
        None,
        reason,
        None,
    )


@pytest.mark.parametrize(
    "head",
    [
        b"GET http://A.example:8080/x?y HTTP/1.1\r\nHost: a.example\r\n",
        b"GET https://a.example HTTP/1.1\r\nHost: a.example:443\r\n",
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n",
        b"GET /redirect?to=http://b.example/ HTTP/1.1\r\nHost: a.example\r\n",
    ],
)
def test_request_targets_that_agree_with_host(head):
    assert inspect_first_bytes(head + b"\r\n", 80).name == "a.example"


def test_a_host_line_in_the_body_is_not_read():
    data = b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 20\r\n\r\nHost: b.example\r\n\r\n"
    assert inspect_first_bytes(data, 80).name == "a.example"


@pytest.mark.parametrize(
    "data",
    [
        b"get / HTTP/1.1\r\n",
        b"GET  / HTTP/1.1\r\n",
        b"GET / HTTP/1.1 \r\n",
        b"GET /\r\n",
        b"GET / HTTP/2\r\n",
        b"GET / HTTP/1.12\r\n",
        b"BREW / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\n",
        b"\x16\x03\x01\x02\x00\x01",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"PRI / HTTP/1.1\r\n",
    ],
)
def test_what_is_not_an_http_1_request_is_other(data):
    assert inspect_first_bytes(data, 80) == (DONE, "other", None, "not an HTTP request", None)


def test_the_http2_preface_is_other():
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert inspect_first_bytes(preface, 80) == (DONE, "other", None, "HTTP/2 prior-knowledge preface", None)
    assert all(inspect_first_bytes(preface[:n], 80).state is NEED_MORE for n in range(16))


def test_an_http_request_on_a_tls_port_is_other():
    assert inspect_first_bytes(http_request(), 443).reason == "not a TLS ClientHello"


def test_every_split_of_an_http_request_is_need_more_then_the_same_host():
    data = http_request(b"a.example:8080")
    for cut in range(1, len(data)):
        first, second = fed([data[:cut], data[cut:]], port=80)
        assert first == (NEED_MORE, "http", None, None, None), cut
        assert second == (DONE, "http", "a.example", None, None), cut


def test_a_request_head_over_the_bound_is_other():
    head = b"GET / HTTP/1.1\r\nHost: a.example\r\nCookie: " + b"c" * MAX_FIRST_BYTES
    reason = f"HTTP request head larger than {MAX_FIRST_BYTES} bytes"
    assert inspect_first_bytes(head, 80) == (DONE, "other", None, reason, None)
    assert inspect_first_bytes(head[: MAX_FIRST_BYTES - 1], 80).state is NEED_MORE
