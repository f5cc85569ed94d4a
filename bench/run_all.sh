#!/usr/bin/env bash
# Every benchmark, one after the other, on a machine doing nothing else (about 31 minutes).
# Figures are printed; copy them into bench/RESULTS.md with the date and machine printed first.
#   bench/run_all.sh               all of them
#   bench/run_all.sh batch fleet   only those (names below)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
PY=.venv/bin/python
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB RAM"
echo "kernel: $(uname -r) (its scheduler shapes the batch figures: see Issue 9 in RESULTS.md)"
echo "python: $($PY --version)"
# A raised autogroup priority lasts for the whole shell session that set it, and flatters GDOS
# against services in sessions of their own (see Issue 9 in RESULTS.md): print it with the run.
echo "autogroup: $(cat /proc/self/autogroup 2>/dev/null || echo n/a)"
all=(foundation batch batch-disk footprint fleet upload frozen console cli rollout metrics-store cluster)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=("${all[@]}")
for name in "${wanted[@]}"; do
  echo; echo "=== $name (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  case "$name" in
    foundation) $PY bench/foundation.py ;;
    batch) $PY bench/batch.py --rounds 5 ;;
    batch-disk) $PY bench/batch.py --disk-pressure --n 10 --agents 1 --rounds 8 ;;
    footprint) $PY -m bench.agent_footprint ;;
    fleet) $PY -m bench.fleet_bench ;;
    upload) $PY bench/upload.py ;;
    frozen) $PY bench/frozen_agent.py --runs 5 ;;
    console) QT_QPA_PLATFORM=offscreen $PY bench/console_table.py ;;
    cli) $PY bench/cli.py ;;
    rollout) $PY bench/rollout.py ;;
    metrics-store) $PY -m bench.metrics_store ;;
    cluster) $PY -m bench.cluster ;;
    *) echo "unknown benchmark '$name' (known: ${all[*]})" >&2; exit 2 ;;
  esac
done
