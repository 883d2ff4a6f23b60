#!/usr/bin/env bash
# Issue 30, helper "decode", session 8, call 1, part decode-prof (limit 100 s): measure before changing.
# Llama-3.2-1B bf16 b1, decode_kernels = gemv-pdl, the step at position ~575 (prompt 512), seeded random
# weights (decode_check ncu-step from branch decode8, commit in BUILT):
#   1. bandwidth.txt   python3 benchmarks/pytorch_decode.py --bandwidth (this call's copy bandwidth: the floors)
#   2. ncu_step.csv    ncu, one replay of the step's graph, every node (--graph-profiling node): duration,
#                      DRAM bytes read/written, DRAM and SM throughput, grid/block
#   3. timeline.csv.gz the same step's graph replayed 5 x 64 times under a CUPTI kernel-activity injection
#                      (timeline.c, no nsys here): each node's start/end, so the gap to the next kernel
#   4. ncu_gemvs.txt   ncu details of gate|up with and without its RMSNorm prologue, down, Q|K|V, o (once
#                      each, eager, L2 flushed by ncu): speed of light, memory, warp stalls, scheduler
#   5. plain.txt       decode_check ncu-step ... none without any tool: ms/step and each GEMV variant's us
#                      (48 calls in a graph over 3 weight copies, from HBM)
#   bash .s8/decode-prof/go.sh $OUT        (from the repository root; carry .s8/decode-prof)
set -uo pipefail
OUT=${1:?usage: go.sh OUT}
D=.s8/decode-prof
W=/tmp/s8-decode-prof
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-96}
FILES="steps.txt gpu.txt bandwidth.txt ncu_step.csv plain.txt ncu_gemvs.txt"
pack() {
    for f in $FILES; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    tar -C "$W" -czf "$OUT/rest.tar.gz" --exclude=decode_check --exclude=libcupti.so.13 \
        --exclude=libtimeline.so . 2>/dev/null
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
cap() { local t=$1 l; l=$(left); [ "$l" -lt "$t" ] && t=$l; echo "$t"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,clocks.mem \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
ncu --version >>"$W/gpu.txt" 2>&1
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/decode_check.xz" "$W/decode_check" && chmod +x "$W/decode_check" || exit 9
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/libcupti.so.13.xz" "$W/libcupti.so.13"
cp "$D/libtimeline.so" "$W/"
DC="$W/decode_check"
ARGS=(ncu-step llama-3.2-1b gemv-pdl)

step "bandwidth (timeout $(cap 20) s)"
timeout "$(cap 20)" python3 benchmarks/pytorch_decode.py --bandwidth >"$W/bandwidth.txt" 2>&1
echo "exit $?" >>"$W/steps.txt"; cat "$W/bandwidth.txt" | tail -2

T=$(cap 34)
step "ncu: one replay of the step's graph, every node (timeout $T s)"
timeout -s KILL "$T" ncu --profile-from-start off --graph-profiling node --clock-control none \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__block_size,launch__registers_per_thread \
    --csv --page raw --log-file "$W/ncu_step.csv" "$DC" "${ARGS[@]}" step >"$W/ncu_step_app.txt" 2>&1
echo "exit $? ($(grep -c gemv "$W/ncu_step.csv" 2>/dev/null) gemv rows)" >>"$W/steps.txt"
grep ncu_step "$W/ncu_step_app.txt" | head -3

T=$(cap 20)
step "timeline: CUPTI kernel records of the step's graph replays (timeout $T s)"
CUDA_INJECTION64_PATH="$W/libtimeline.so" LD_LIBRARY_PATH="$W:${LD_LIBRARY_PATH:-}" TIMELINE_OUT="$W/timeline.csv" \
    timeout -s INT "$T" "$DC" "${ARGS[@]}" none >"$W/timeline_app.txt" 2>&1
echo "exit $? ($(wc -l <"$W/timeline.csv" 2>/dev/null) kernel records)" >>"$W/steps.txt"
gzip -f "$W/timeline.csv" 2>/dev/null
grep ncu_step "$W/timeline_app.txt" | head -2

T=$(cap 22)
step "ncu details: the layer's GEMVs once each, gate|up with and without the RMSNorm prologue (timeout $T s)"
timeout -s KILL "$T" ncu --profile-from-start off --clock-control none --set basic \
    --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
    --log-file "$W/ncu_gemvs.txt" "$DC" "${ARGS[@]}" gemvs >"$W/ncu_gemvs_app.txt" 2>&1
echo "exit $? ($(grep -c 'Duration' "$W/ncu_gemvs.txt" 2>/dev/null) durations)" >>"$W/steps.txt"

T=$(( $(left) - 1 ))
step "plain: no tool, ms/step and the GEMV variants (timeout $T s)"
if [ "$T" -ge 8 ]; then
    timeout -s KILL "$T" "$DC" "${ARGS[@]}" none >"$W/plain.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
    cat "$W/plain.txt"
fi
step done
exit 0
