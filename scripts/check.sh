#!/usr/bin/env bash
# Format check, lint and types: the one script CI and humans run. `--fix` rewrites in place.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fix" ]; then
  .venv/bin/ruff format .
  .venv/bin/ruff check --fix .
else
  .venv/bin/ruff format --check .
  .venv/bin/ruff check .
fi
.venv/bin/mypy .
