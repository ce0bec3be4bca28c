"""The lab's moving parts that later tests lean on: zone reloads, per-name upstream
behaviour, query statistics, clean shutdown and namespace hygiene."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import ownership
from tests.lab.addressing import DEFAULT_PODS, PodSpec
from tests.lab.netlab import Lab, cleanup_stale, list_namespaces
from tests.lab.procs import run_captured
from tests.lab.pyrun import probe
from tests.lab.upstream import FakeInternet

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]

DNS4 = "198.51.100.53:53"
ZONE = {
    "www.google.com": {"A": ["198.51.100.10"], "ttl": 300},
    "slow.example.com": {"A": ["198.51.100.20"], "delay_ms": 400},
    "blackhole.example.com": {"A": ["198.51.100.20"], "drop": True},
    "broken.example.com": {"servfail": True},
    "forcetc.example.com": {"A": ["198.51.100.30"], "tc": True},
}
POD_C = PodSpec("pod-c", "10.244.1.12", "2001:db8:244::12")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(pods=(*DEFAULT_PODS, POD_C)) as lab:
        yield lab


@pytest.fixture
def upstream(lab: Lab, tmp_path: Path) -> Iterator[FakeInternet]:
    with FakeInternet(lab, tmp_path, ZONE) as fi:
        yield fi


def test_extra_pod_gets_full_connectivity(lab: Lab, upstream: FakeInternet):
    r = probe(lab, "pod-c", "tcp", "2001:db8:100::30", 80)
    assert r["banner"] == "hello from [2001:db8:100::30]:80"


def test_zone_change_is_picked_up_mid_test(lab: Lab, upstream: FakeInternet):
    assert probe(lab, "pod-a", "dns", "www.google.com", "A", "--server", DNS4)["answers"][0]["ttl"] == 300
    upstream.set_zone({**ZONE, "www.google.com": {"A": ["198.51.100.11"], "ttl": 7}})
    r = probe(lab, "pod-a", "dns", "www.google.com", "A", "--server", DNS4)
    assert [(a["data"], a["ttl"]) for a in r["answers"]] == [("198.51.100.11", 7)]


def test_per_name_behaviour(lab: Lab, upstream: FakeInternet):
    slow = probe(lab, "pod-a", "dns", "slow.example.com", "A", "--server", DNS4)
    assert slow["rcode"] == "NOERROR" and slow["elapsed_ms"] >= 400
    for transport in ([], ["--tcp"]):
        dropped = probe(
            lab,
            "pod-a",
            "dns",
            "blackhole.example.com",
            "A",
            "--server",
            DNS4,
            "--timeout",
            "0.3",
            *transport,
        )
        assert dropped["result"] == "timeout"
    assert probe(lab, "pod-a", "dns", "broken.example.com", "A", "--server", DNS4)["rcode"] == "SERVFAIL"
    assert probe(lab, "pod-a", "dns", "forcetc.example.com", "A", "--server", DNS4)["tc"] is True


def test_query_statistics(lab: Lab, upstream: FakeInternet):
    for _ in range(3):
        probe(lab, "pod-b", "dns", "WWW.google.com.", "A", "--server", DNS4)
    probe(lab, "pod-b", "dns", "www.google.com", "AAAA", "--server", "[2001:db8:100::53]:53", "--tcp")
    assert upstream.query_count("www.google.com", "A", "udp") == 3
    assert upstream.query_count("www.google.com", transport="tcp") == 1
    assert upstream.query_count() == 4
    assert upstream.stats()["clients"] == {"10.244.1.11": 3, "2001:db8:244::11": 1}


def test_sigterm_exits_cleanly(lab: Lab, tmp_path: Path):
    fi = FakeInternet(lab, tmp_path, ZONE).start()
    assert fi.stop() == 0, fi.log()


def test_cleanup_stale_spares_live_labs(lab: Lab):
    orphan = "fq0badc0-node"
    run_captured(["ip", "netns", "add", orphan], timeout=10, check=True)
    try:
        removed = cleanup_stale()
        assert orphan in removed
        assert set(lab.namespaces) <= set(list_namespaces())
    finally:
        run_captured(["ip", "netns", "del", orphan], timeout=10, check=False)


def test_half_built_lab_is_torn_down(monkeypatch: pytest.MonkeyPatch):
    def explode(self: Lab) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Lab, "_build_uplink", explode)
    lab = Lab()
    with pytest.raises(RuntimeError, match="boom"), lab:
        pass
    assert not set(lab.namespaces) & set(list_namespaces())
    assert not ownership.owner_alive(lab.id)
    assert not (ownership.REGISTRY_DIR / f"{lab.id}.json").exists()


def test_bridged_pod_traffic_passes_node_forward_hook(lab: Lab):
    # Enforcement between pods on one node only works if bridged frames reach nftables.
    assert lab.bridge_nf_call is True
    rules = """
        table inet labtest {
            chain labfwd { type filter hook forward priority 0; tcp dport 9 drop; }
        }
    """
    lab.run("node", ["nft", "-f", "-"], input=rules)
    try:
        r = probe(lab, "pod-a", "tcp", lab.pod("pod-b").ipv6, 9, "--timeout", "0.3")
        assert r["result"] == "timeout"
    finally:
        lab.run("node", ["nft", "delete", "table", "inet", "labtest"])
    assert probe(lab, "pod-a", "tcp", lab.pod("pod-b").ipv6, 9)["result"] == "refused"
