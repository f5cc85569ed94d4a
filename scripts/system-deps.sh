#!/usr/bin/env bash
# System packages the tests need, installed only when missing (CI: a fresh Debian 12, as root).
# Safe to run again. Without apt-get or root it says what is missing and carries on.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

need=()
# `systemd-analyze verify` checks the agent's generated unit (tests/agent/test_autostart_cli.py).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# PyInstaller on Linux reads binaries with objdump and strips them with strip.
command -v objdump >/dev/null 2>&1 || need+=(binutils)
# PyInstaller bundles Python's shared library; a Debian python3 links it statically.
libpython=$("$PY" - <<'PY'
import os, subprocess, sys, sysconfig
name = sysconfig.get_config_var("INSTSONAME") or "libpython%d.%d.so.1.0" % sys.version_info[:2]
libdir = sysconfig.get_config_var("LIBDIR") or ""
try:
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
except OSError:
    cache = ""
found = os.path.exists(os.path.join(libdir, name)) or name in cache
print("" if found else "libpython%d.%d" % sys.version_info[:2])
PY
)
[ -n "$libpython" ] && need+=("$libpython")

[ ${#need[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "system-deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "system-deps: missing ${need[*]} (install them with your package manager; some tests need them)" >&2
fi
