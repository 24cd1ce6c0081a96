"""The code stays in the shape docs/architecture.md gives it: small modules, short
functions, and every package's surface (its ``__all__``) in step with what it names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.support.processes import ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
SOURCES = sorted(
    path
    for folder in ("cos", "cli")
    for path in (ROOT / folder).rglob("*.py")
    if "v1" not in path.relative_to(ROOT).parts
)
PACKAGES = sorted(
    path.parent for path in (ROOT / "cos").glob("*/__init__.py") if path.parent.name != "v1"
)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines"


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_no_function_is_over_60_lines(path: Path) -> None:
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_name(path)}: {', '.join(long)}"


@pytest.mark.parametrize("package", PACKAGES, ids=_name)
def test_each_package_exports_what_it_names_and_nothing_else(package: Path) -> None:
    name = ".".join(package.relative_to(ROOT).parts)
    module = importlib.import_module(name)
    tree = ast.parse((package / "__init__.py").read_text())
    named = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.If)
        for statement in node.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    assert set(module.__all__) == named
    for public in module.__all__:
        assert getattr(module, public) is not None, f"{name}.{public}"
