#!/usr/bin/env bash
# Build the frozen programs with PyInstaller (specs in build_spec/) into dist/:
#   scripts/build.sh [agent|master|console|all]     (default: all)
#   dist/gdos-agent     one file, copy it to a host and run it
#   dist/gdos-master    one file, migrations inside
#   dist/gdos-console/  one folder (Qt needs its plugins next to it)
# Work files go to build/pyinstaller/. Each build takes 30-120 s; `all` builds the three.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
what=${1:-all}
case "$what" in
  agent|master|console) targets=("$what") ;;
  all) targets=(agent master console) ;;
  *) echo "usage: scripts/build.sh [agent|master|console|all]" >&2; exit 2 ;;
esac
for t in "${targets[@]}"; do
  echo "build: $t"
  .venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
    --distpath "${GDOS_DIST_DIR:-dist}" --workpath build/pyinstaller \
    "build_spec/$t.spec"
done
for t in "${targets[@]}"; do
  case "$t" in
    console) p="${GDOS_DIST_DIR:-dist}/gdos-console" ;;
    *) p="${GDOS_DIST_DIR:-dist}/gdos-$t" ;;
  esac
  echo "built: $p ($(du -sh "$p" | cut -f1))"
done
