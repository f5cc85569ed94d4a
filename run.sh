#!/usr/bin/env bash
# Set everything up, then run GDOS the embedded way: a master and a local agent on this machine
# (data in ./data, API on http://127.0.0.1:8080). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
export GDOS_DATA_DIR=${GDOS_DATA_DIR:-$PWD/data}
exec .venv/bin/gdos-master --with-agent --port "${GDOS_PORT:-127.0.0.1:8080}" "$@"
