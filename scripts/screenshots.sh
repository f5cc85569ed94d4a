#!/usr/bin/env bash
# Screenshots of the console's main views under Xvfb, saved to docs/screenshots/ (or $1).
# Installs what it needs: Xvfb and Qt's xcb libraries (scripts/system-deps.sh), the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/system-deps.sh screenshots
out=${1:-docs/screenshots}
export QT_QPA_PLATFORM=xcb
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
exec xvfb-run -a -s "-screen 0 1600x1000x24 -nolisten tcp" .venv/bin/python scripts/screenshots.py "$out"
