#!/usr/bin/env bash
# Set everything up, then run GDOS the embedded way: a master and a local agent on this machine
# (data in ./data, API on http://127.0.0.1:8080). Ctrl-C stops both.
# With a display ($DISPLAY or $WAYLAND_DISPLAY) and PySide6 installed, the desktop console starts
# them and shows them (quitting it stops them); GDOS_HEADLESS=1 keeps the headless way.
# Extra arguments go to gdos-console or gdos-master, whichever runs.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
export GDOS_DATA_DIR=${GDOS_DATA_DIR:-$PWD/data}
listen=${GDOS_PORT:-127.0.0.1:8080}
if [ -z "${GDOS_HEADLESS:-}" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; } &&
   .venv/bin/python -c 'import PySide6.QtWidgets, qasync' 2>/dev/null; then
  exec .venv/bin/gdos-console --embedded --data-dir "$GDOS_DATA_DIR" --embedded-port "${listen##*:}" "$@"
fi
exec .venv/bin/gdos-master --with-agent --port "$listen" "$@"
