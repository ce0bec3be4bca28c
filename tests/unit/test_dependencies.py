"""pyproject.toml's runtime dependencies are exactly the third-party libraries fqdn_policy/ imports
(what only tests and the lab use belongs in the test extra), and README.md's "Dependencies" table
names every runtime and test dependency."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib

from tests.unit.importscan import ROOT, imports, product_modules

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group()) for requirement in requirements}


def imported_distributions(modules: list[tuple[str, str, bool]]) -> dict[str, str]:
    """Distribution of each third-party library the modules import -> one "module:line" importing it."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for module, source, is_package in modules:
        for imported in imports(source, module, is_package):
            top = imported.target.split(".")[0]
            if top == "fqdn_policy" or top in sys.stdlib_module_names or top == "__future__":
                continue
            for distribution in owners.get(top, [top]):
                found.setdefault(normalized(distribution), f"{module}:{imported.line}")
    return found


def test_the_runtime_dependencies_are_what_the_product_imports():
    imported = imported_distributions(list(product_modules()))
    declared = requirement_names(PROJECT["dependencies"])
    assert sorted(declared - imported.keys()) == [], "runtime dependencies nothing in fqdn_policy/ imports"
    assert {name: where for name, where in imported.items() if name not in declared} == {}, (
        "imported by fqdn_policy/ but not a runtime dependency"
    )


def test_a_declared_but_unimported_dependency_shows():
    modules = [("fqdn_policy.x", "import structlog\nfrom dnslib import DNSRecord\nimport os, json\n", False)]
    assert imported_distributions(modules) == {"structlog": "fqdn_policy.x:1", "dnslib": "fqdn_policy.x:2"}


def readme_dependency_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Dependencies\n", 1)[1].split("\n## ", 1)[0]
    return {normalized(name) for name in re.findall(r"^\| `([A-Za-z0-9._-]+)` \|", section, re.MULTILINE)}


def test_the_readme_table_names_every_runtime_and_test_dependency():
    listed = requirement_names(PROJECT["dependencies"]) | requirement_names(
        PROJECT["optional-dependencies"]["test"] + PROJECT["optional-dependencies"]["fuzz"]
    )
    assert readme_dependency_names() == listed
