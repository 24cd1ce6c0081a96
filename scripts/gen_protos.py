"""Regenerate the Python code for every .proto under proto/.

Usage: python scripts/gen_protos.py [OUT_DIR]

OUT_DIR defaults to the repository root, so `chief_of_state/v1/*_pb2.py` (the
Chief of State contract) and `cos/v1/*_pb2.py` (our own extensions) land where
the packages import them. tests/unit/test_generated_protos.py runs this into
a temporary folder and fails when the committed files differ.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files(proto_dir: Path = PROTO_DIR) -> list[Path]:
    return sorted(proto_dir.rglob("*.proto"))


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> None:
    """Run protoc (python, grpc and mypy stubs) for every proto file into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    files = [str(p.relative_to(proto_dir)) for p in proto_files(proto_dir)]
    bin_dir = Path(sys.executable).parent
    plugins = []
    for name in ("protoc-gen-mypy", "protoc-gen-mypy_grpc"):
        found = shutil.which(name) or str(bin_dir / name)
        plugins.append(f"--plugin={name}={found}")
    args = [
        "protoc",
        *plugins,
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package_dir in {(out_dir / f).parent for f in files}:
        # Make every generated folder a regular package up to out_dir.
        current = package_dir
        while current != out_dir:
            (current / "__init__.py").touch()
            current = current.parent


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
