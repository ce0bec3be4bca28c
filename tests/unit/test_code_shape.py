"""The shape rules every helper works to: no module under fqdn_policy/ over 400 lines, no function
over 80 (from its `def` to its last line; nested functions count on their own)."""

from __future__ import annotations

import ast

from tests.unit.importscan import product_modules

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def long_functions(source: str, module: str) -> list[str]:
    """Each function of `source` over the limit, as "module:line Qual.name (N lines)"."""
    found: list[str] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = (child.end_lineno or child.lineno) - child.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found.append(f"{module}:{child.lineno} {name} ({length} lines)")
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def offenders(source: str, module: str) -> list[str]:
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{module} ({lines} lines)")
    return found + long_functions(source, module)


def test_no_module_or_function_is_over_its_limit():
    found = [line for module, source, _is_package in product_modules() for line in offenders(source, module)]
    assert not found, (
        f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function:\n" + "\n".join(found)
    )


# -- the checker itself: it must be able to fail -------------------------------------------------


def _function(name: str, body_lines: int, indent: str = "") -> str:
    return f"{indent}def {name}():\n" + "".join(f"{indent}    x = {i}\n" for i in range(body_lines))


def test_a_function_over_80_lines_is_named_with_its_class():
    source = "class Agent:\n" + _function("start", 80, "    ") + _function("stop", 79, "    ")
    assert offenders(source, "m") == ["m:2 Agent.start (81 lines)"]


def test_nested_and_async_functions_count_and_80_lines_pass():
    source = _function("fine", 79) + "async def outer():\n" + _function("inner", 85, "    ")
    assert offenders(source, "m") == ["m:81 outer (87 lines)", "m:82 outer.inner (86 lines)"]


def test_a_module_over_400_lines_is_named():
    source = "".join(f"x{i} = {i}\n" for i in range(401))
    assert offenders(source, "fqdn_policy.big") == ["fqdn_policy.big (401 lines)"]
    assert offenders(source[: source.index("x400")], "fqdn_policy.big") == []
