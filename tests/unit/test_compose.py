"""docker-compose.yml stays valid: it parses, mounts the policy it names, and has only NET_ADMIN."""

from pathlib import Path

import yaml

from policy.fileloader import load_file

ROOT = Path(__file__).resolve().parents[2]


def test_compose_service_shape():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["fqdn-policy"]
    assert service["cap_add"] == ["NET_ADMIN"]
    assert service["network_mode"] == "host"
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    (mount,) = service["volumes"]
    source, target, mode = mount.split(":")
    assert mode == "ro"
    policy_arg = next(a for a in service["command"] if a.startswith("--policy="))
    in_container = policy_arg.split("=", 1)[1]
    assert in_container.startswith(target + "/")
    # the mounted file exists in the repository and is a valid policy
    load_file(ROOT / source / in_container[len(target) + 1 :])
    assert service["command"][0] == "run"
