#!/usr/bin/env bash
# The test command: install what is missing, then lint, type-check and run pytest.
# Extra arguments go to pytest: scripts/test.sh -m unit (one tier, see README.md),
# scripts/test.sh tests/unit -k routing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
