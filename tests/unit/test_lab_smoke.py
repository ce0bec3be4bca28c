"""End-to-end check of the test lab itself: topology, fake internet and probes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.netlab import Lab, cleanup_stale, list_namespaces
from tests.lab.pyrun import probe
from tests.lab.upstream import FakeInternet

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]

DNS4 = "198.51.100.53:53"
DNS6 = "[2001:db8:100::53]:53"
BIG = [f"198.51.100.{i}" for i in range(100, 160)]  # 60 A records: ~1 KB, over 512

ZONE = {
    "www.google.com": {"A": ["198.51.100.10"], "AAAA": ["2001:db8:100::10"], "ttl": 300},
    "alias.example.com": {"CNAME": "www.google.com", "ttl": 60},
    "big.example.com": {"A": BIG, "ttl": 30},
}


@pytest.fixture(scope="module")
def lab_and_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, FakeInternet]]:
    cleanup_stale()
    with Lab() as lab, FakeInternet(lab, tmp_path_factory.mktemp("upstream"), ZONE) as upstream:
        yield lab, upstream
    assert not set(lab.namespaces) & set(list_namespaces())


def _data(result: dict[str, object], rtype: str) -> list[str]:
    answers = result["answers"]
    assert isinstance(answers, list)
    return [a["data"] for a in answers if a["type"] == rtype]


@pytest.mark.parametrize("server", [DNS4, DNS6])
@pytest.mark.parametrize("transport", [[], ["--tcp"]], ids=["udp", "tcp"])
def test_dns_answers_a_and_aaaa(
    lab_and_upstream: tuple[Lab, FakeInternet], server: str, transport: list[str]
):
    lab, _ = lab_and_upstream
    a = probe(lab, "pod-a", "dns", "www.google.com", "A", "--server", server, *transport)
    assert (a["rcode"], a["id_ok"], a["question_ok"], a["tc"]) == ("NOERROR", True, True, False)
    assert _data(a, "A") == ["198.51.100.10"]
    assert a["answers"][0]["ttl"] == 300
    aaaa = probe(lab, "pod-a", "dns", "www.google.com", "AAAA", "--server", server, *transport)
    assert _data(aaaa, "AAAA") == ["2001:db8:100::10"]


def test_dns_cname_chain_and_nxdomain(lab_and_upstream: tuple[Lab, FakeInternet]):
    lab, _ = lab_and_upstream
    r = probe(lab, "pod-a", "dns", "Alias.Example.COM", "A", "--server", DNS4)
    assert [(x["name"], x["type"]) for x in r["answers"]] == [
        ("Alias.Example.COM.", "CNAME"),
        ("www.google.com.", "A"),
    ]
    assert probe(lab, "pod-a", "dns", "nope.example.com", "A", "--server", DNS4)["rcode"] == "NXDOMAIN"


def test_big_answer_truncated_over_udp_complete_over_tcp(lab_and_upstream: tuple[Lab, FakeInternet]):
    lab, upstream = lab_and_upstream
    udp = probe(lab, "pod-a", "dns", "big.example.com", "A", "--server", DNS4)
    assert udp["tc"] is True and udp["answers"] == []
    tcp = probe(lab, "pod-a", "dns", "big.example.com", "A", "--server", DNS4, "--tcp")
    assert tcp["tc"] is False and sorted(_data(tcp, "A")) == sorted(BIG)
    # A large enough EDNS0 buffer lifts the 512-byte limit, and OPT comes back.
    edns = probe(lab, "pod-a", "dns", "big.example.com", "A", "--server", DNS4, "--edns", "4096")
    assert edns["tc"] is False and edns["edns"] is True and len(edns["answers"]) == len(BIG)
    assert upstream.query_count("big.example.com", "A", "udp") == 2
    assert upstream.query_count("big.example.com", "A", "tcp") == 1


@pytest.mark.parametrize("host", ["198.51.100.10", "2001:db8:100::10"])
def test_tcp_connects_to_fake_hosts(lab_and_upstream: tuple[Lab, FakeInternet], host: str):
    lab, _ = lab_and_upstream
    r = probe(lab, "pod-a", "tcp", host, 443)
    assert r["result"] == "connected"
    shown = f"[{host}]" if ":" in host else host
    assert r["banner"] == f"hello from {shown}:443"


def test_tcp_closed_port_is_refused(lab_and_upstream: tuple[Lab, FakeInternet]):
    lab, _ = lab_and_upstream
    assert probe(lab, "pod-a", "tcp", "198.51.100.10", 81)["result"] == "refused"


@pytest.mark.parametrize("host", ["198.51.100.20", "2001:db8:100::20"])
def test_udp_echo_answers(lab_and_upstream: tuple[Lab, FakeInternet], host: str):
    lab, _ = lab_and_upstream
    r = probe(lab, "pod-a", "udp", host, 443)
    assert r["result"] == "answered"
    assert host in r["reply"]


def test_pods_reach_each_other_and_the_node(lab_and_upstream: tuple[Lab, FakeInternet]):
    lab, _ = lab_and_upstream
    # Nothing listens there, so "refused" proves the packet arrived and the RST came back.
    assert probe(lab, "pod-a", "tcp", lab.pod("pod-b").ipv4, 9)["result"] == "refused"
    assert probe(lab, "pod-b", "tcp", "2001:db8:244::1", 9)["result"] == "refused"


def test_lab_close_removes_namespaces_and_processes(tmp_path: Path):
    lab = Lab()
    with lab:
        upstream = FakeInternet(lab, tmp_path, ZONE).start()
        pid = upstream.pid
        names = set(lab.namespaces)
        assert names <= set(list_namespaces())
    # No stop() on purpose: closing the lab must end what it started.
    assert not names & set(list_namespaces())
    assert pid is not None and not Path(f"/proc/{pid}").exists()
