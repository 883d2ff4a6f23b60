#!/usr/bin/env bash
# Failure isolation, Ctrl-C and kill -9 on a real GPU, with NVML metering: the evidence for the
# reliability work. Runs the CUDA runner (./runner, or $RUNNER) from the repository root and
# leaves one tarball of the three run directories (records, manifests, reports) plus logs in DIR.
#
#   bash benchmarks/gpu_resilience.sh DIR
#
# 1. experiments/failure_isolation.toml: batch 131072 at seq 512 cannot fit in GPU memory; its
#    cell must fail with CUDA's out-of-memory error and the cells after it must be measured.
# 2. experiments/smoke.toml on CUDA, Ctrl-C (SIGINT) once two cells have records, then --resume.
# 3. The same with kill -9 once three cells have records, then --resume.
set -uo pipefail
dir=${1:?usage: gpu_resilience.sh DIR}
runner=${RUNNER:-./runner}
mkdir -p "$dir/runs"
log() { echo "== $*" | tee -a "$dir/summary.txt"; }
records() { find "$1/cells" -name '*.json' 2>/dev/null | wc -l; }
wait_records() { # DIR N PID: until DIR has N records or PID is gone
  while [ "$(records "$1")" -lt "$2" ] && kill -0 "$3" 2>/dev/null; do sleep 0.05; done
}
# A GPU window of 1 s spans ~10 energy-counter updates: enough to exercise the metered path.
smoke=(experiments/smoke.toml --set device.backend=cuda --set sensor.kind=nvml --set protocol.min_window_s=1.0)

log "1. failure isolation: $(date -u +%FT%TZ)"
timeout 300 "$runner" experiments/failure_isolation.toml --out "$dir/runs/failure_isolation" >"$dir/failure_isolation.log" 2>&1
log "exit $? (expected 1); records: $(records "$dir/runs/failure_isolation")"

log "2. Ctrl-C then resume"
run="$dir/runs/interrupt"
"$runner" "${smoke[@]}" --out "$run" >"$dir/interrupt.log" 2>&1 &
pid=$!
wait_records "$run" 2 $pid
kill -INT $pid
wait $pid
log "interrupted run: exit $? (expected 130); records: $(records "$run")"
"$runner" "${smoke[@]}" --resume --out "$run" >>"$dir/interrupt.log" 2>&1
log "resume: exit $? (expected 0); records: $(records "$run") of 6"

log "3. kill -9 then resume"
run="$dir/runs/kill9"
"$runner" "${smoke[@]}" --out "$run" >"$dir/kill9.log" 2>&1 &
pid=$!
wait_records "$run" 3 $pid
kill -9 $pid
wait $pid
log "killed run: exit $? (expected 137); records: $(records "$run"); temporaries: $(find "$run" -name '*.tmp' | wc -l)"
"$runner" "${smoke[@]}" --resume --out "$run" >>"$dir/kill9.log" 2>&1
log "resume: exit $? (expected 0); records: $(records "$run") of 6; temporaries: $(find "$run" -name '*.tmp' | wc -l)"

tar -C "$dir" -czf "$dir/runs.tar.gz" runs && rm -rf "$dir/runs"
