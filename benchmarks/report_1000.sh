#!/usr/bin/env bash
# Post-processing and report rendering of 1,000 cells with power traces: target at most 2 s on a
# 2-core machine. The cells are synthetic copies of a real H100 run's records and traces
# (benchmarks/synthetic_run.py), so each does the work of a real GPU cell (windows, energies, a
# ~750-sample power trace, a trace chart in SVG and PNG).
#
#   bash benchmarks/report_1000.sh [RUNNER_BINARY]      # default target/release/runner
set -euo pipefail
cd "$(dirname "$0")/.."
runner=${1:-target/release/runner}
[ -x "$runner" ] || cargo build --release
template=docs/results/2026-11-24-nvidia-h100-80gb-hbm3-quantization/flagship
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 benchmarks/synthetic_run.py "$template" "$dir/run" 1000 >/dev/null
times=()
for i in 1 2 3; do
  start=$(date +%s.%N)
  "$runner" report "$dir/run" >/dev/null
  end=$(date +%s.%N)
  times+=("$(python3 -c "print($end - $start)")")
done
median=$(printf '%s\n' "${times[@]}" | sort -g | sed -n 2p)
charts=$(ls "$dir/run/charts" | wc -l)
printf 'runner report, 1000 cells with traces (%s chart files), %s CPUs: runs %s s; median %.2f s; target 2.00 s; median/target %.2f\n' \
  "$charts" "$(nproc)" "$(printf '%.2f ' "${times[@]}")" "$median" "$(python3 -c "print($median / 2)")"
