#!/usr/bin/env bash
# Debian packages of the frozen programs: scripts/package-deb.sh [DIST [OUT]] [options]
#   DIST (default dist/) holds what `scripts/build.sh all` built; OUT defaults to DIST/deb.
#   gdos-agent, gdos-master and gdos-console .debs, built with dpkg-deb and checked with lintian
#   and desktop-file-validate (scripts/system-deps.sh packaging installs them).
#   Options: --compression xz|gzip|none (default xz; Debian 12's lintian refuses zstd), --level N,
#   --no-check, --only NAME (repeatable).
# `scripts/build.sh deb` builds the programs and then runs this. More: docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-dist}
out=${2:-$dist/deb}
shift $(( $# > 2 ? 2 : $# ))
exec .venv/bin/python build_spec/package_deb.py "$dist" "$out" "$@"
