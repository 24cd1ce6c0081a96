"""The committed generated code must match what proto/ generates today."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

import pytest

from tests.support.processes import ROOT


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts/gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize("package", ["chief_of_state/v1", "cos/v1"])
def test_generated_code_is_up_to_date(tmp_path: Path, package: str) -> None:
    _generator().generate(tmp_path)
    fresh = _tree(tmp_path / package)
    committed = _tree(ROOT / package)
    assert sorted(fresh) == sorted(committed), "run: python scripts/gen_protos.py"
    stale = [
        name
        for name, path in fresh.items()
        if not filecmp.cmp(path, committed[name], shallow=False)
    ]
    assert stale == [], f"stale generated files {stale}; run: python scripts/gen_protos.py"
