import os
from pathlib import Path

import pytest
import yaml

from tests.conformance import timescale
from tests.e2e.agentlab import AgentLab, lab_pods
from tests.lab.netlab import Lab

CASES_FILE = Path(__file__).with_name("cases.yaml")


def load_cases(factor: float | None = None) -> dict:
    """The table with every row on the lab's clock (tests/conformance/timescale.py)."""
    factor = timescale.lab_factor() if factor is None else factor
    table = yaml.safe_load(CASES_FILE.read_text())
    table["cases"] = [timescale.scale_case(case, factor) for case in table["cases"]]
    return table


def zone_of(cases: list[dict]) -> dict:
    zone: dict = {}
    for case in cases:
        for name, records in case.get("zone", {}).items():
            assert name not in zone, f"{case['id']}: {name} is already used by another row"
            zone[name] = records
    return zone


def hosts_of(cases: list[dict]) -> list[str]:
    """Every documentation address a row answers with or connects to: the fake internet holds them all."""
    hosts: set[str] = set()
    for case in cases:
        for records in case.get("zone", {}).values():
            hosts.update(str(a) for a in records.get("A", []) + records.get("AAAA", []))
        for step in case.get("steps", []):
            if "connect" in step:
                hosts.add(step["connect"].rsplit(":", 1)[0].strip("[]"))
    return sorted(h for h in hosts if h.startswith(("198.51.100.", "2001:db8:100:")))


class Conformance:
    def __init__(self, env: AgentLab) -> None:
        self.env = env
        self.flags: tuple[str, ...] = ()

    def ensure_agent(self, flags: tuple[str, ...]) -> None:
        if self.env.agent is not None and self.env.agent.poll() is None and flags == self.flags:
            return
        if self.env.agent is not None and self.env.agent.poll() is None:
            self.env.stop_agent()
        self.env.start_agent(*timescale.base_flags(timescale.lab_factor()), *flags)
        self.flags = flags


@pytest.fixture(scope="module")
def conformance(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    cases = load_cases()["cases"]
    workdir = tmp_path_factory.mktemp("conformance")
    with Lab(inet_hosts=[*hosts_of(cases), "198.51.100.53", "2001:db8:100::53"]) as lab:
        env = AgentLab(lab, workdir, zone=zone_of(cases))
        env.write_policy(lab_pods())
        with env.internet:
            yield Conformance(env)
