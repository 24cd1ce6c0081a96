"""Regenerate the Python code for the bank example's protos.

Usage: python examples/bank/gen_protos.py

Runs the repository's scripts/gen_protos.py `generate` over examples/bank/proto into
examples/bank/gen, so the code lands at examples/bank/gen/bank/v1/bank_pb2.py (with .pyi
stubs). The other scripts of the example put examples/bank/gen on sys.path themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLE_DIR.parent.parent
PROTO_DIR = EXAMPLE_DIR / "proto"
GEN_DIR = EXAMPLE_DIR / "gen"


def _load_repo_generator() -> ModuleType:
    """Load scripts/gen_protos.py by path: scripts/ is not a package."""
    path = REPO_ROOT / "scripts" / "gen_protos.py"
    spec = importlib.util.spec_from_file_location("_cos_gen_protos", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Generate examples/bank/gen from examples/bank/proto."""
    _load_repo_generator().generate(out_dir=GEN_DIR, proto_dir=PROTO_DIR)
    print(f"generated {GEN_DIR.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
