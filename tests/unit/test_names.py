"""Name and pattern matching, one row per rule of docs/semantics.md."""

import pytest

from fqdn_policy.policy.match.names import InvalidName, compile_name, compile_pattern, normalize, suffixes

MATCH_ROWS = [
    # (kind, policy text, query name, matches)
    ("name", "www.google.com", "www.google.com", True),
    ("name", "www.google.com", "WWW.Google.COM", True),
    ("name", "www.google.com.", "www.google.com", True),
    ("name", "www.google.com", "www.google.com.", True),
    ("name", "www.google.com", "google.com", False),
    ("name", "www.google.com", "a.www.google.com", False),
    ("pattern", "*.yourdomain.com", "api.yourdomain.com", True),
    ("pattern", "*.yourdomain.com", "API.YourDomain.com.", True),
    ("pattern", "*.yourdomain.com", "yourdomain.com", False),
    ("pattern", "*.yourdomain.com", "a.b.yourdomain.com", False),
    ("pattern", "*.yourdomain.com", "api.yourdomain.com.evil.net", False),
    ("pattern", "*.yourdomain.com", "apiyourdomain.com", False),
    ("pattern", "api-*.example.com", "api-eu.example.com", True),
    ("pattern", "api-*.example.com", "api-.example.com", True),
    ("pattern", "api-*.example.com", "api.example.com", False),
    ("pattern", "api-*.example.com", "api-eu.x.example.com", False),
    ("pattern", "*", "anything.at.all", True),
    ("pattern", "*", "com", True),
    ("pattern", "**.example.com", "a.example.com", True),
    ("pattern", "**.example.com", "a.b.example.com", True),
    ("pattern", "**.example.com", "example.com", False),
    ("pattern", "**.example.com", "badexample.com", False),
    # `**.` before a label with `*` in it takes the regex path: still one or more labels, never zero
    ("pattern", "**.api-*.example.com", "x.api-eu.example.com", True),
    ("pattern", "**.api-*.example.com", "a.b.api-.example.com", True),
    ("pattern", "**.api-*.example.com", "api-eu.example.com", False),
    ("pattern", "**.api-*.example.com", "x.api.example.com", False),
    ("pattern", "**.api-*.example.com", "x.api-eu.x.example.com", False),
    ("pattern", "**.*.example.com", "a.b.example.com", True),
    ("pattern", "**.*.example.com", "b.example.com", False),
    ("pattern", "a*b.example.com", "ab.example.com", True),
    ("pattern", "a*b.example.com", "axxb.example.com", True),
    ("pattern", "a*b.example.com", "a.b.example.com", False),
    ("pattern", "www.*.com", "www.google.com", True),
    ("pattern", "www.*.com", "www.a.b.com", False),
    ("pattern", "exact.example.com", "exact.example.com", True),
    ("pattern", "exact.example.com", "x.exact.example.com", False),
    # case is folded in ASCII only: U+212A KELVIN SIGN is not "k"
    ("name", "kubernetes.io", "\u212aubernetes.io", False),
    ("pattern", "*.kubernetes.io", "a.\u212aubernetes.io", False),
]


@pytest.mark.parametrize(("kind", "text", "qname", "expected"), MATCH_ROWS)
def test_matching(kind, text, qname, expected):
    matcher = compile_name(text) if kind == "name" else compile_pattern(text)
    normalized = normalize(qname)
    assert matcher.matches(normalized) is expected
    if expected:
        # the suffix index must find every pattern that matches
        assert matcher.suffix in suffixes(normalized)


INVALID_ROWS = [
    ("name", "", "empty"),
    ("name", "a..b", "empty label"),
    ("name", ".a.b", "empty label"),
    ("name", "*.example.com", "use `pattern`"),
    ("name", "exa mple.com", "characters"),
    ("name", "a" * 64 + ".com", "longer than 63"),
    ("name", ("a" * 60 + ".") * 5 + "com", "limit is 253"),
    ("pattern", "x.**.com", "'**' is only valid"),
    ("pattern", "**", "'**' is only valid"),
    ("pattern", "**x.com", "'**' is only valid"),
    ("pattern", "a..com", "empty label"),
    ("pattern", "ex!.com", "characters"),
    ("pattern", "", "empty"),
    ("name", "\u212aubernetes.io", "212A KELVIN SIGN is not ASCII"),
    ("pattern", "*.\u212aubernetes.io", "212A KELVIN SIGN is not ASCII"),
    ("name", "\u0130stanbul.example", "0130 LATIN CAPITAL LETTER I WITH DOT ABOVE is not ASCII"),
]


@pytest.mark.parametrize(("kind", "text", "message"), INVALID_ROWS)
def test_invalid(kind, text, message):
    compile_fn = compile_name if kind == "name" else compile_pattern
    with pytest.raises(InvalidName, match=message.replace("*", r"\*").replace("(", r"\(")):
        compile_fn(text)


def test_double_star_with_a_partial_label_takes_the_regex_path():
    # the rows above exercise the regex, not the string tests of the common shapes
    assert compile_pattern("**.api-*.example.com").shape == "regex"
    assert compile_pattern("**.*.example.com").shape == "regex"


def test_suffixes_end_at_root():
    assert suffixes("a.b.c") == ["a.b.c", "b.c", "c", ""]
