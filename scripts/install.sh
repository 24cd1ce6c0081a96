#!/usr/bin/env bash
# Create .venv and install the project: `install.sh` with its dev tools (tests, lint,
# type checks, code generation), `install.sh runtime` without them. A no-op when
# pyproject.toml has not changed since an install that covers what is asked.
set -euo pipefail
cd "$(dirname "$0")/.."
want_mode=${1:-dev}
case "$want_mode" in
  dev) extras="[dev]" ;;
  runtime) extras="" ;;
  *) echo "usage: $0 [dev|runtime]" >&2; exit 2 ;;
esac
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.cos-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have="" have_mode=""
if [ -f "$stamp" ]; then read -r have have_mode < "$stamp" || true; fi
# A dev install covers a runtime one; a runtime install does not cover dev.
if [ "${have:-}" != "$want" ] || { [ "$want_mode" = dev ] && [ "${have_mode:-}" != dev ]; }; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".$extras"
  echo "$want $want_mode" > "$stamp"
fi
