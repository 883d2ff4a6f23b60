#!/usr/bin/env bash
# Issue 30, helper "decode", session 6, part decode-check (limit 60 s): decode_check from branch decode
# (commit in BUILT), on the GPU:
# 1. decode_check gemv-pdl: the decode GEMV and swiglu_rows launched programmatically (cuLaunchKernelEx,
#    programmatic stream serialization) against their plain twins (f32 b1/b8, bf16 b1/b3/b8, four shapes,
#    NaN row, repeatability); the decoder with decode_kernels = "gemv-pdl" against the plain decoder (fp32
#    64 greedy steps, bf16 16; tiny llama/mistral/qwen2/qwen3 and SmolLM2); its step as a CUDA graph
#    against eager (32 steps; node count and programmatic edges printed).
# 2. decode_check profile llama-3.2-1b: each launch alone in a graph (fused and gemv), and each way's
#    whole layer as a chain of launches (fused 10, gemv 7, gemv-pdl 7), b1 and b8.
# 3. decode_check steps llama-3.2-1b 1: the whole decode step's graph, fused / gemv / gemv-pdl alternated.
#   bash .s6/decode-check/check.sh $OUT        (from the repository root; carry .s6/decode-check)
set -uo pipefail
OUT=${1:?usage: check.sh OUT}
D=.s6/decode-check
W=/tmp/s6-decode-check
rm -rf "$W"
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-57}
pack() { for f in steps.txt gpu.txt pdl_check.txt profile.txt step_timing.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
# run_for SECONDS CMD...: at most SECONDS, and never past the part's limit.
run_for() {
    local t=$1; shift
    local left=$(( LIMIT - ($(date +%s) - T0) ))
    [ "$left" -lt "$t" ] && t=$left
    if [ "$t" -lt 3 ]; then echo "skipped: no time left" >>"$W/steps.txt"; return; fi
    timeout -s KILL "$t" "$@"
    echo "exit $? (timeout $t s)" >>"$W/steps.txt"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/decode_check.xz" /tmp/s6-decode_check && chmod +x /tmp/s6-decode_check || exit 9
step "decode_check gemv-pdl"
run_for 28 /tmp/s6-decode_check gemv-pdl >"$W/pdl_check.txt" 2>&1
step "decode_check profile llama-3.2-1b"
run_for 15 /tmp/s6-decode_check profile llama-3.2-1b >"$W/profile.txt" 2>&1
step "decode_check steps llama-3.2-1b 1"
run_for 20 /tmp/s6-decode_check steps llama-3.2-1b 1 >"$W/step_timing.txt" 2>&1
step done
