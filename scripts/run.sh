#!/usr/bin/env bash
# Install what is missing, then run `cos serve`.
# With no COS_WRITE_SIDE_HOST set, the bank example's write handler is started
# too and used as the write side; with no COS_DB_HOST set, cos serve starts an
# embedded PostgreSQL in .cos-data/postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh runtime
if [ -z "${COS_WRITE_SIDE_HOST:-}" ]; then
  export COS_WRITE_SIDE_HOST=127.0.0.1 COS_WRITE_SIDE_PORT=${COS_WRITE_SIDE_PORT:-50051}
  .venv/bin/python examples/bank/handler.py --host 127.0.0.1 --port "$COS_WRITE_SIDE_PORT" &
  handler=$!
  trap 'kill $handler 2>/dev/null || true' EXIT
fi
.venv/bin/cos serve "$@" &
serve=$!
trap 'kill -TERM $serve 2>/dev/null || true; wait $serve; kill ${handler:-} 2>/dev/null || true' INT TERM
wait $serve
