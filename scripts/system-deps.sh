#!/usr/bin/env bash
# Install the Debian packages the project needs, only those missing (idempotent; root or sudo).
#   scripts/system-deps.sh               what the test suite needs
#   scripts/system-deps.sh screenshots   also Xvfb and the X11/xcb libraries Qt's xcb platform loads
#   scripts/system-deps.sh packaging     also lintian and desktop-file-validate (scripts/build.sh deb)
# Groups are plain lists below: add a group or a package there. On a system without dpkg it says
# what to install and carries on; without root or sudo it says what is missing and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

# PySide6's QtGui/QtWidgets/QtCharts link these even when drawing offscreen (console tests).
TEST_PKGS="libgl1 libegl1 libfontconfig1 libfreetype6 libxkbcommon0 libglib2.0-0 libdbus-1-3 fonts-dejavu-core"
# `systemd-analyze verify` checks the agent's generated unit (tests/agent/test_autostart_cli.py).
command -v systemd-analyze >/dev/null 2>&1 || TEST_PKGS="$TEST_PKGS systemd"
# PyInstaller on Linux reads binaries with objdump and strips them with strip (frozen agent test);
# the build clears search paths a Python built into a prefix records (build_spec/gdosbuild.py).
command -v objdump >/dev/null 2>&1 || TEST_PKGS="$TEST_PKGS binutils"
command -v patchelf >/dev/null 2>&1 || TEST_PKGS="$TEST_PKGS patchelf"
# The console bundle's smaller ICU data: icupkg repackages it, the C compiler makes the library.
command -v icupkg >/dev/null 2>&1 || TEST_PKGS="$TEST_PKGS icu-devtools"
command -v cc >/dev/null 2>&1 || TEST_PKGS="$TEST_PKGS gcc"
# The database tests also run on a throwaway PostgreSQL server (tests/pg.py starts one).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || TEST_PKGS="$TEST_PKGS postgresql"
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
[ -n "$libpython" ] && TEST_PKGS="$TEST_PKGS $libpython"

# Qt's xcb platform plugin under Xvfb (scripts/screenshots.sh, a desktop session); xwininfo and
# xwd let the frozen console's test find its window and take a screenshot.
SCREENSHOT_PKGS="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-randr0
 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0 libxcb-sync1 libxcb-shm0
 libxcb-util1 libxkbcommon-x11-0 libx11-xcb1 x11-utils x11-apps"
# Checks of the Debian packages scripts/build.sh deb makes (dpkg-deb itself comes with dpkg), and
# the Wayland libraries the console's Qt loads on a Wayland desktop: installed here so that
# the console package can name their packages among its dependencies.
PACKAGING_PKGS="lintian desktop-file-utils libwayland-client0 libwayland-cursor0 libwayland-egl1"

want="$TEST_PKGS"
for group in "$@"; do
  case "$group" in
    screenshots) want="$want $SCREENSHOT_PKGS" ;;
    packaging) want="$want $PACKAGING_PKGS" ;;
    *) echo "system-deps: unknown group '$group' (known: screenshots, packaging)" >&2; exit 2 ;;
  esac
done

command -v dpkg-query >/dev/null 2>&1 || { echo "system-deps: not a Debian-like system; install the equivalents of: $want" >&2; exit 0; }
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "system-deps: need root to install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
echo "system-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
