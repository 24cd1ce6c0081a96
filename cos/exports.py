"""A package's public names, loaded from its private modules when first used.

Every package of the runtime keeps its code in private modules (``_shard.py``) and names
what others may import in its ``__init__``: an ``if TYPE_CHECKING:`` block importing each
public name from the module that defines it, and ``__all__``. Then

    __getattr__ = lazy_exports(__name__)

makes ``from cos.writeside import Shard`` import ``cos.writeside._shard`` at that moment,
and nothing else of the package: a process loads only the parts it uses (reading the
settings does not load the HTTP server, say). Type checkers read the same block.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path


def lazy_exports(package: str) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: a name of its ``__all__`` comes from the module
    its ``TYPE_CHECKING`` block imports it from."""
    sources: dict[str, str] = {}

    def __getattr__(name: str) -> object:
        if not sources:
            sources.update(_type_checking_imports(package))
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[package], name, value)  # found once
        return value

    return __getattr__


def _type_checking_imports(package: str) -> dict[str, str]:
    """name -> module of each ``from module import name`` under ``if TYPE_CHECKING:`` in the
    package's ``__init__``."""
    init = sys.modules[package].__file__
    assert init is not None
    found = {}
    for node in ast.parse(Path(init).read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        found[alias.asname or alias.name] = statement.module
    return found
