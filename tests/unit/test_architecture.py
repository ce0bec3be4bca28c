"""The import rule of docs/architecture.md, enforced: which fqdn_policy package may import which, and
which package alone may import each third-party library that speaks to the outside world."""

from __future__ import annotations

import pytest

from tests.unit.importscan import imports, product_modules

PACKAGES = frozenset(
    {"logs", "settings", "sni", "dnsproxy", "policy", "enforcer", "sources", "ops", "agent", "cli"}
)

# Besides itself, a package may import these. `__init__` is fqdn_policy/__init__.py, `__main__` is
# `python -m fqdn_policy`. dnsproxy imports no logs today, so the pure layers stay without it.
# `settings` (how a component declares its flags) is below every component that has configuration.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "logs": frozenset(),
    "settings": frozenset(),
    "sni": frozenset(),
    "dnsproxy": frozenset({"settings"}),
    "policy": frozenset({"settings"}),
    "enforcer": frozenset({"policy", "logs", "settings"}),
    "sources": frozenset({"policy", "logs", "settings"}),
    "ops": frozenset({"policy", "dnsproxy", "enforcer", "logs", "settings"}),
    "agent": PACKAGES - {"cli"},
    "cli": PACKAGES,
    "__main__": frozenset({"cli"}),
    "__init__": frozenset(),
}

# The third-party libraries that talk to the kernel, the API server, the log stream and Prometheus,
# each owned by one package.
OWNER = {"nftables": "enforcer", "kubernetes": "sources", "structlog": "logs", "prometheus_client": "ops"}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Each import of `source` (the module `module`) the rule forbids, as "module:line imports X"."""
    own = package_of(module)
    allowed = MAY_IMPORT[own] | {own}
    found = []
    for imported in imports(source, module, is_package):
        parts = imported.target.split(".")
        if parts[0] == "fqdn_policy":
            if len(parts) == 1 or parts[1] in allowed:
                continue
            why = f"{own} may import {', '.join(sorted(MAY_IMPORT[own])) or 'no other fqdn_policy package'}"
        elif parts[0] in OWNER and OWNER[parts[0]] != own:
            why = f"only {OWNER[parts[0]]} may import {parts[0]}"
        else:
            continue
        found.append(f"{module}:{imported.line} imports {imported.target} ({why})")
    return found


def test_every_module_keeps_the_import_rule():
    found = [
        line
        for module, source, is_package in product_modules()
        for line in violations(source, module, is_package)
    ]
    assert not found, "imports against docs/architecture.md:\n" + "\n".join(found)


def test_the_rule_names_every_package_there_is():
    assert {package_of(module) for module, _source, _is_package in product_modules()} == set(MAY_IMPORT)


# -- the checker itself: it must be able to fail -------------------------------------------------


def test_a_forbidden_import_is_named_with_its_line():
    source = "import os\n\nfrom fqdn_policy.agent.runtime import AgentConfig\n"
    assert violations(source, "fqdn_policy.enforcer.tables") == [
        "fqdn_policy.enforcer.tables:3 imports fqdn_policy.agent.runtime.AgentConfig"
        " (enforcer may import logs, policy, settings)"
    ]


def test_imports_inside_functions_and_under_type_checking_count():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from fqdn_policy.agent.runtime import Agent\n"
        "def later():\n"
        "    import fqdn_policy.cli.main\n"
    )
    lines = violations(source, "fqdn_policy.ops.metrics")
    assert [line.split(" (")[0] for line in lines] == [
        "fqdn_policy.ops.metrics:3 imports fqdn_policy.agent.runtime.Agent",
        "fqdn_policy.ops.metrics:5 imports fqdn_policy.cli.main",
    ]


@pytest.mark.parametrize(
    ("source", "module", "is_package"),
    [
        ("from fqdn_policy import logs\n", "fqdn_policy.dnsproxy.server", False),
        ("from ..logs import bind\n", "fqdn_policy.policy.model", False),
        ("from .. import enforcer\n", "fqdn_policy.sources", True),
        ("import fqdn_policy.dnsproxy.wire\n", "fqdn_policy.logs", False),
        ("from fqdn_policy.policy import model\n", "fqdn_policy.__main__", False),
    ],
)
def test_forbidden_package_imports_are_caught_however_spelled(source, module, is_package):
    assert len(violations(source, module, is_package)) == 1


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import nftables\n", "fqdn_policy.ops.metrics"),
        ("from kubernetes import client\n", "fqdn_policy.agent.runtime"),
        ("import structlog\n", "fqdn_policy.cli.main"),
        ("from prometheus_client.core import GaugeMetricFamily\n", "fqdn_policy.agent.gate"),
    ],
)
def test_a_third_party_library_outside_its_owner_is_caught(source, module):
    (line,) = violations(source, module)
    assert "only " in line


@pytest.mark.parametrize(
    ("source", "module"),
    [
        (
            "from fqdn_policy.policy.model import Policy\nfrom fqdn_policy.logs import get\n",
            "fqdn_policy.enforcer.x",
        ),
        ("from .wire import parse_query\n", "fqdn_policy.dnsproxy.server"),
        ("from fqdn_policy.enforcer import nft\nimport prometheus_client\n", "fqdn_policy.ops.metrics"),
        ("from fqdn_policy.ops import metrics\n", "fqdn_policy.agent.runtime"),
        ("from fqdn_policy.cli.main import main\n", "fqdn_policy.__main__"),
        ("import nftables\n", "fqdn_policy.enforcer.nft"),
        ("import yaml, os\n", "fqdn_policy.policy.spec.crd"),
    ],
)
def test_allowed_imports_pass(source, module):
    assert violations(source, module) == []
