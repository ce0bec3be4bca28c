"""Every import a module of fqdn_policy/ makes, read with `ast`: at the top, inside functions and under
TYPE_CHECKING alike (an import that only a type checker runs still ties the packages together)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fqdn_policy"


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # absolute and dotted: `from a.b import c` is a.b.c, `import a.b` is a.b


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> Iterator[tuple[str, str, bool]]:
    """(dotted module name, source, whether it is a package's __init__) of every module under fqdn_policy/."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield module_name(path), path.read_text(), path.name == "__init__.py"


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a relative `from` names."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(source: str, module: str, is_package: bool = False) -> list[Import]:
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            origin = _resolve(module, is_package, node.level, node.module)
            found.extend(
                Import(node.lineno, origin if alias.name == "*" else f"{origin}.{alias.name}")
                for alias in node.names
            )
    return sorted(found, key=lambda found_import: found_import.line)
