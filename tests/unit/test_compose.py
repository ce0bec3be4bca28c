"""docker-compose.yml stays a working trial: the proxy programs nftables with NET_ADMIN and routes the
client, whose resolver is the proxy and whose only way out crosses the proxy's forward hook.

Docker is not available where the tests run, so the file is checked by reading it, not by running it.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fqdn_policy.cli.main import build_parser
from fqdn_policy.policy.match.ruleindex import PolicyIndex
from fqdn_policy.sources.fileloader import load_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def mounts(service):
    """{container path: (host path, mode)}"""
    out = {}
    for volume in service["volumes"]:
        source, target, mode = volume.split(":")
        out[target] = (ROOT / source, mode)
    return out


def host_path(service, container_path):
    for target, (source, _) in mounts(service).items():
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted")


def interpolate(text):
    """Compose's `${NAME:-default}` with NAME unset, and `$$` for a literal `$`."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text).replace("$$", "$")


def run_args(service):
    """The proxy's command as `fqdn-policy` itself parses it (a bad flag fails here)."""
    return build_parser().parse_args([interpolate(a) for a in service["command"]])


def test_services_and_capabilities(compose):
    assert set(compose["services"]) == {"proxy", "client"}
    proxy, client = compose["services"]["proxy"], compose["services"]["client"]
    assert proxy["cap_add"] == ["NET_ADMIN"] and client["cap_add"] == ["NET_ADMIN"]
    assert "privileged" not in proxy and "privileged" not in client
    assert (ROOT / proxy["build"]["dockerfile"]).is_file()
    assert proxy["sysctls"]["net.ipv4.ip_forward"] == "1"  # it routes the client's traffic
    assert client["depends_on"]["proxy"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(proxy["healthcheck"]["test"])


def test_policy_is_mounted_read_only_and_valid_and_knows_the_client(compose):
    proxy, client = compose["services"]["proxy"], compose["services"]["client"]
    assert all(mode == "ro" for _, mode in mounts(proxy).values())
    args = run_args(proxy)
    assert args.command == "run"
    policy = load_file(host_path(proxy, str(args.policy)))
    index = PolicyIndex(policy)
    client_ip = client["networks"]["pods"]["ipv4_address"]
    pod = index.client(client_ip)
    assert pod is not None and pod.rules is not None, "the client must be an enforced pod of the policy"


def test_client_resolves_through_the_proxy(compose):
    proxy, client = compose["services"]["proxy"], compose["services"]["client"]
    proxy_ip = proxy["networks"]["pods"]["ipv4_address"]
    assert run_args(proxy).listen == [(proxy_ip, 53)]
    resolv = host_path(client, "/etc/resolv.conf")
    assert mounts(client)["/etc/resolv.conf"][1] == "ro"
    nameservers = [
        line.split()[1] for line in resolv.read_text().splitlines() if line.startswith("nameserver")
    ]
    assert nameservers == [proxy_ip]


def test_client_traffic_crosses_the_proxys_forward_hook(compose):
    """Not network_mode: service:proxy (output hook, not enforced); routed through the proxy instead."""
    proxy, client = compose["services"]["proxy"], compose["services"]["client"]
    assert "network_mode" not in client and "network_mode" not in proxy
    assert set(client["networks"]) == {"pods"}
    assert compose["networks"]["pods"]["internal"] is True  # no way out except through the proxy
    assert set(proxy["networks"]) == {"pods", "outside"}
    assert compose["networks"].get("outside", {}).get("internal") is not True
    proxy_ip = proxy["networks"]["pods"]["ipv4_address"]
    assert f"ip route replace default via {proxy_ip}" in " ".join(client["command"])


def test_proxy_entrypoint_loads_the_nat_file_then_runs_the_agent(compose):
    proxy = compose["services"]["proxy"]
    script = proxy["entrypoint"][2]
    nat_in_container = script.split("nft -f ", 1)[1].split()[0]
    nat = host_path(proxy, nat_in_container)
    assert nat.is_file()
    assert 'exec fqdn-policy "$$@"' in script  # $$ is compose's escape for a literal $


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a netns")
def test_nat_file_is_valid_nftables():
    """`nft -c` checks without committing, in a throw-away network namespace."""
    nat = ROOT / "config" / "compose" / "nat.nft"
    result = subprocess.run(["unshare", "-n", "nft", "-c", "-f", str(nat)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
