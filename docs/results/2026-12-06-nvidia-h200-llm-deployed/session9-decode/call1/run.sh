#!/usr/bin/env bash
# Issue 30, helper "decode", session 9, call 1, part decode-prof (limit 150 s): where gemv-fold's batch-1 step
# spends its time beyond the GEMVs, before changing the attention. Llama-3.2-1B, seeded random weights, bf16,
# batch 1, prompt 512, decode_kernels = gemv-fold, main's decode_check (.s9/bin/decode_check.xz), the step's
# graph replayed at positions 512-575, the profiled replay the step at position 575:
#   1. plain.txt      decode_check ncu-step llama-3.2-1b gemv-fold none, no tool: ms/step (5 x 64 replays) and
#                     each GEMV variant alone (48 calls in a graph over 3 weight copies). First, so the driver's
#                     JIT of the PTX is done before ncu runs (session 8's ncu pass on a fresh machine was killed
#                     before the step ran).
#   2. ncu_step.txt   ncu on ONE replay of the step's graph, its kernel nodes only (--graph-profiling node,
#                     --profile-from-start off: nothing of the load, prefill, capture or warm-up), restricted by
#                     --kernel-name regex to the layer kernels, lm_head and the argmax, --launch-skip 40
#                     --launch-count 42 (layers 8-15's 5 kernels + lm_head + argmax): SpeedOfLight, LaunchStats,
#                     Occupancy, WarpStateStats + DRAM bytes; L2 flushed before each kernel (ncu default), SM clocks
#                     not locked. Also as CSV (ncu_step.csv).
#   3. ncu_attn.txt   ncu on the folded attention of layer 8 alone: + SchedulerStats, MemoryWorkloadAnalysis,
#                     SourceCounters; its SASS with stall samples (attn_sass.csv, in rest.tar.gz)
#   4. timeline       the same step's replays under a CUPTI kernel-activity injection (libtimeline.so, built
#                     from timeline.c beside it; libcupti 13.0.85 from the nvidia-cuda-cupti wheel): each node's
#                     start and end in the real replay (PDL overlap included). timeline.csv.gz in rest.tar.gz.
#   5. profile.txt    decode_check profile llama-3.2-1b b1: each launch alone in a graph of 50 (the one-launch
#                     attention without rope: decode_attention_fused) and each way's layer chain
#   6. bandwidth.txt  python3 benchmarks/pytorch_decode.py --bandwidth (this call's copy bandwidth: the floors)
#   bash .s9/decode-prof/run.sh $OUT        (from the repository root; carry .s9/decode-prof and .s9/bin)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s9/decode-prof
W=/tmp/s9-decode-prof
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-150}
# At most 6 files in $OUT.
FILES="steps.txt plain.txt ncu_step.txt ncu_attn.txt profile.txt"
pack() {
    for f in $FILES; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    tar -C "$W" -czf "$OUT/rest.tar.gz" --exclude=decode_check --exclude=libcupti.so.13 \
        --exclude=libtimeline.so --exclude='*.ncu-rep' . 2>/dev/null
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) - 3 )); }
cap() { local t=$1 l; l=$(left); [ "$l" -lt "$t" ] && t=$l; [ "$t" -lt 5 ] && t=0; echo "$t"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,clocks.mem \
    --format=csv >>"$W/steps.txt" 2>&1
cat "$D/BUILT" >>"$W/steps.txt" 2>/dev/null
ncu --version 2>&1 | tail -1 >>"$W/steps.txt"
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    .s9/bin/decode_check.xz "$W/decode_check" && chmod +x "$W/decode_check" || { echo "unxz decode_check failed" >>"$W/steps.txt"; exit 9; }
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/libcupti.so.13.xz" "$W/libcupti.so.13"
cp "$D/libtimeline.so" "$W/"
DC="$W/decode_check"
ARGS=(ncu-step llama-3.2-1b gemv-fold)
# The layer kernels (gemv_fold_rms Q|K|V, decode_attention_rope, gemv_plain o, gemv_fold_rms_swiglu gate|up,
# gemv_split_plain down), cuBLAS's lm_head (gemv*/nvjet*/gemm*), the grid-wide argmax.
REGEX='regex:gemv|decode_attention|argmax|nvjet|gemm|sm90'
NCU=(ncu --profile-from-start off --graph-profiling node --clock-control none)

T=$(cap 25)
step "plain: no tool, ms/step and the GEMV variants (timeout $T s)"
[ "$T" -gt 0 ] && { timeout -k 3 -s KILL "$T" "$DC" "${ARGS[@]}" none >"$W/plain.txt" 2>&1; echo "exit $?" >>"$W/steps.txt"; }
grep ncu_step "$W/plain.txt" | head -2

T=$(cap 55)
step "ncu: one replay of the step, layers 8-15 + lm_head + argmax (timeout $T s)"
if [ "$T" -gt 0 ]; then
    timeout -k 8 -s INT "$T" "${NCU[@]}" --kernel-name "$REGEX" --launch-skip 40 --launch-count 42 \
        --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,smsp__warps_launched.sum \
        -o "$W/step" "$DC" "${ARGS[@]}" step >"$W/ncu_step_app.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
    if [ -f "$W/step.ncu-rep" ]; then
        timeout 20 ncu -i "$W/step.ncu-rep" >"$W/ncu_step.txt" 2>&1
        timeout 20 ncu -i "$W/step.ncu-rep" --csv --page raw >"$W/ncu_step.csv" 2>&1
        echo "kernels profiled: $(grep -c 'Context 1, Stream' "$W/ncu_step.txt")" >>"$W/steps.txt"
    else
        tail -20 "$W/ncu_step_app.txt" >>"$W/steps.txt"
    fi
fi

T=$(cap 35)
step "ncu: layer 8's folded attention alone, stall reasons and SASS (timeout $T s)"
if [ "$T" -gt 0 ]; then
    timeout -k 8 -s INT "$T" "${NCU[@]}" --kernel-name regex:decode_attention_rope --launch-skip 8 --launch-count 1 \
        --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
        --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters \
        -o "$W/attn" "$DC" "${ARGS[@]}" step >"$W/ncu_attn_app.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
    if [ -f "$W/attn.ncu-rep" ]; then
        timeout 15 ncu -i "$W/attn.ncu-rep" >"$W/ncu_attn.txt" 2>&1
        timeout 15 ncu -i "$W/attn.ncu-rep" --page source --csv --print-source sass >"$W/attn_sass.csv" 2>&1
        echo "attn_sass.csv lines: $(wc -l <"$W/attn_sass.csv")" >>"$W/steps.txt"
    else
        tail -20 "$W/ncu_attn_app.txt" >>"$W/steps.txt"
    fi
fi

T=$(cap 20)
step "timeline: CUPTI kernel records of the step's replays (timeout $T s)"
if [ "$T" -gt 0 ]; then
    CUDA_INJECTION64_PATH="$W/libtimeline.so" LD_LIBRARY_PATH="$W:${LD_LIBRARY_PATH:-}" TIMELINE_OUT="$W/timeline.csv" \
        timeout -k 3 -s INT "$T" "$DC" "${ARGS[@]}" none >"$W/timeline_app.txt" 2>&1
    echo "exit $? ($(wc -l <"$W/timeline.csv" 2>/dev/null) kernel records)" >>"$W/steps.txt"
    gzip -f "$W/timeline.csv" 2>/dev/null
    grep ncu_step "$W/timeline_app.txt" | head -1
fi

T=$(cap 25)
step "profile llama-3.2-1b b1: each launch alone in a graph, each way's layer chain (timeout $T s)"
[ "$T" -gt 0 ] && { timeout -k 3 -s KILL "$T" "$DC" profile llama-3.2-1b b1 >"$W/profile.txt" 2>&1; echo "exit $?" >>"$W/steps.txt"; }

T=$(cap 20)
step "bandwidth (timeout $T s)"
[ "$T" -gt 0 ] && { timeout -k 3 "$T" python3 benchmarks/pytorch_decode.py --bandwidth >"$W/bandwidth.txt" 2>&1; echo "exit $?" >>"$W/steps.txt"; }
cat "$W/bandwidth.txt" >>"$W/steps.txt" 2>/dev/null
step done
exit 0
