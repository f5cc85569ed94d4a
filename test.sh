#!/usr/bin/env bash
# Set everything up, then run the whole suite: format, lint, types, unit and end-to-end tests.
# Extra arguments go to pytest, e.g. ./test.sh -m "not slow" to skip the slow end-to-end group.
# Test files run in parallel (pytest-xdist, a file's tests in one worker: they share its master);
# GDOS_TEST_WORKERS=0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
# Debian packages the tests need: Qt libraries for the offscreen console tests; Xvfb and X tools
# for the frozen console's; lintian and desktop-file-validate for the Debian packages'.
scripts/system-deps.sh screenshots packaging
scripts/check.sh
exec .venv/bin/python -m pytest -n "${GDOS_TEST_WORKERS:-3}" --dist loadfile "$@"
