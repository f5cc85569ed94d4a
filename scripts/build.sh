#!/usr/bin/env bash
# Build the frozen programs with PyInstaller (specs in build_spec/) into dist/, and packages:
#   scripts/build.sh [agent|master|console|all|deb]     (default: all)
#   dist/gdos-agent     one file, copy it to a host and run it
#   dist/gdos-master    one file, migrations inside
#   dist/gdos-console/  one folder: gdos-console, and the gdos-master and gdos-agent its
#                       embedded mode starts (a laptop needs nothing else)
#   deb                 `all`, then dist/deb/gdos-{agent,master,console}_<version>_<arch>.deb
#                       (scripts/package-deb.sh; Debian and Ubuntu)
# Work files go to build/pyinstaller/. `all` analyses each program once. Details and installing:
# docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
what=${1:-all}
dist=${GDOS_DIST_DIR:-dist}
case "$what" in
  agent|master|console|all) spec=$what ;;
  deb) spec=all ;;
  *) echo "usage: scripts/build.sh [agent|master|console|all|deb]" >&2; exit 2 ;;
esac
echo "build: $spec"
.venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath build/pyinstaller "build_spec/$spec.spec"
case "$spec" in
  all) built=(gdos-agent gdos-master gdos-console) ;;
  *) built=("gdos-$spec") ;;
esac
for p in "${built[@]}"; do
  echo "built: $dist/$p ($(du -sh "$dist/$p" | cut -f1))"
done
if [ "$what" = deb ]; then
  scripts/package-deb.sh "$dist" "$dist/deb"
fi
