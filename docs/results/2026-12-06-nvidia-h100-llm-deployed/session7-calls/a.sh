#!/usr/bin/env bash
# Coordinator, session 7, call 1 part a (limit ~580 s), main's runner (commit in BUILT): issue 30's same-call
# ratio table, alternating PyTorch and the runner: PyTorch compiled b1 (+ copy bandwidth), runner b1, PyTorch
# compiled b8, runner b8; then benchmarks/decode_ratios.py -> ratios.csv. Shortened runner protocol as in
# session 6 (.s6/decode-run/run.sh). Writes /tmp/s7-torch/torch.jsonl for part b (prefill ratios).
set -uo pipefail
OUT=${1:?usage: a.sh OUT}
D=${D:-.s7/c1}   # the folder holding runner.xz and BUILT
W=/tmp/s7-a
T=/tmp/s7-torch
rm -rf "$W"; mkdir -p "$W" "$T"
: >"$T/torch.jsonl"
T0=$(date +%s)
LIMIT=${LIMIT_S:-575}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    cp "$T/torch.jsonl" "$T/torch.txt" "$OUT/" 2>/dev/null
    for f in steps.txt gpu.txt ratios.csv ratios.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-4} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 5 ] && t=0
    echo "$t"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt"
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/runner.xz" /tmp/s7-runner && chmod +x /tmp/s7-runner || exit 9
/tmp/s7-runner --version >>"$W/gpu.txt" 2>&1
TORCH=(python3 benchmarks/pytorch_decode.py --ways compiled --window-s 1.0 --out "$T/torch.jsonl")
torch() {  # torch SECONDS LABEL CELLS...
    local t; t=$(budget "$1"); shift; local label=$1; shift
    step "PyTorch compiled $label (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -s KILL "$t" "${TORCH[@]}" "$@" >>"$T/torch.txt" 2>&1
    echo "torch exit $?" >>"$W/steps.txt"
}
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
runner() {  # runner SECONDS NAME MODELS BATCHES
    local t; t=$(budget "$1")
    step "runner $2: models $3, batches $4 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 5 -s INT "$t" /tmp/s7-runner experiments/llm_own_fused.toml --out "$W/run-$2" "${P[@]}" \
        --set "matrix.model=$3" --set "matrix.batch_size=$4" >"$W/run-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-$2" ] && [ ! -f "$W/run-$2/summary.csv" ]; then
        timeout 8 /tmp/s7-runner report "$W/run-$2" >>"$W/run-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
}
torch 200 "batch 1 (+ bandwidth)" --bandwidth llama-3.2-1b:1 qwen2.5-0.5b:1 smollm2-135m:1
# B1_MODELS: the runner's b1 cells (fused first: a fault in a newer kernel would poison the process after it).
DEFAULT_B1='["llama-3.2-1b-fused","llama-3.2-1b-gemv-pdl","qwen2.5-0.5b-fused","qwen2.5-0.5b-gemv-pdl","smollm2-135m-gemv-pdl"]'
runner "${B1_S:-100}" b1 "${B1_MODELS:-$DEFAULT_B1}" '[1]'
# B8_ALL=1: all three shapes at b8; B8_ALL=smol: SmolLM2-135M only (the cell session 6's call 2 left without a
# runner figure; Llama and Qwen b8 were measured in the same call there).
if [ "${B8_ALL:-0}" = 1 ]; then
    torch 175 "batch 8" llama-3.2-1b:8 qwen2.5-0.5b:8 smollm2-135m:8
    runner 70 b8 '["llama-3.2-1b-fused","qwen2.5-0.5b-fused","smollm2-135m-fused"]' '[8]'
elif [ "${B8_ALL:-0}" = smol ]; then
    torch 80 "batch 8" smollm2-135m:8
    runner 35 b8 '["smollm2-135m-fused","smollm2-135m-gemv-pdl"]' '[8]'
fi  # B8_ALL=0: no batch-8 cells
step ratios
timeout 10 python3 benchmarks/decode_ratios.py "$T/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
step done
