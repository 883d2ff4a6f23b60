#!/usr/bin/env bash
# Issue 30, helper "decode", part 2 of 2 (limit 420 s): the ratio table. PyTorch's compiled static-cache
# step (benchmarks/pytorch_decode.py) and the runner's own decoder (experiments/llm_own_fused.toml) with
# decode_kernels = "gemv" (and "fused" for Llama-3.2-1B b1, first: a fault in a new kernel would poison the process), alternating per model, batch 1 first;
# each step under a timeout cut to what is left of the call, everything packed after each step.
#   bash .s5/decode-run/run.sh $OUT          (from the repository root; carry .s5/decode-run)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s5/decode-run
W=/tmp/decode-run
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-405}   # the call's 420 s less the final pack
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt torch.txt torch.jsonl ratios.csv ratios.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
# A step's timeout: its own, or what is left before LIMIT less RESERVE s for the ratios (0: skip).
budget() {
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-10} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 5 ] && t=0
    echo "$t"
}
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
unxz "$D/runner.xz" /tmp/decode-runner || exit 9
/tmp/decode-runner --version >>"$W/gpu.txt" 2>&1
# The templates the binary was built with (main's may have moved since).
TPL=(); [ -d "$D/templates" ] && TPL=(--templates "$D/templates")
# The shortened protocol of the morning's call (the file's: warm-up 0.5 s, windows >= 1 s x 3, idle 2 + 2 s).
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
torch() {  # torch SECONDS CELLS... [extra args]
    local t; t=$(budget "$1"); shift
    step "PyTorch compiled $* (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout "$t" python3 benchmarks/pytorch_decode.py --ways compiled --window-s 1.0 --out "$W/torch.jsonl" "$@" \
        >>"$W/torch.txt" 2>&1
    echo "torch exit $?" >>"$W/steps.txt"
}
runner() {  # runner SECONDS NAME MODELS BATCHES
    local t; t=$(budget "$1")
    step "runner $2: models $3, batches $4 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 8 -s INT "$t" /tmp/decode-runner experiments/llm_own_fused.toml --out "$W/run-$2" "${P[@]}" "${TPL[@]}" \
        --set "matrix.model=$3" --set "matrix.batch_size=$4" >"$W/run-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    # A run cut by its timeout has records but no summary: render it from them.
    if [ -d "$W/run-$2" ] && [ ! -f "$W/run-$2/summary.csv" ]; then
        timeout 15 /tmp/decode-runner report "$W/run-$2" "${TPL[@]}" >>"$W/run-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
}
torch "${TORCH_LLAMA1_S:-75}" llama-3.2-1b:1 --bandwidth
runner "${RUN_LLAMA1_S:-40}" llama-b1 '["llama-3.2-1b-fused","llama-3.2-1b-gemv"]' '[1]'
torch "${TORCH_SMOL1_S:-65}" smollm2-135m:1
runner "${RUN_SMOL_S:-30}" smollm2 '["smollm2-135m-gemv"]' '[1,8]'
torch "${TORCH_QWEN1_S:-65}" qwen2.5-0.5b:1
runner "${RUN_QWEN_S:-30}" qwen '["qwen2.5-0.5b-gemv"]' '[1,8]'
runner "${RUN_LLAMA8_S:-20}" llama-b8 '["llama-3.2-1b-gemv"]' '[8]'
# Batch 8 on PyTorch's side in one process (one import), Llama first: what fits.
torch "${TORCH_B8_S:-200}" llama-3.2-1b:8 qwen2.5-0.5b:8 smollm2-135m:8
step ratios
python3 benchmarks/decode_ratios.py "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
step done
