#!/usr/bin/env bash
# Start shenron for ../shared/bench/overhead.py: route `bench-model` to the harness's backend.
#   bench/serve-for-bench.sh PORT BACKEND_URL [uvicorn|granian]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cfg=$(mktemp --suffix .toml)
cat > "$cfg" <<TOML
[server]
server = "${3:-uvicorn}"
log-level = "warning"
[backends.bench]
url = "$2"
model = "bench-model"
TOML
exec "$here/.venv/bin/shenron" serve --config "$cfg" --port "$1"
