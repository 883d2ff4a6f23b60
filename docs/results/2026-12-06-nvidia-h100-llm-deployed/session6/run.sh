#!/usr/bin/env bash
# Issue 30, helper "decode", session 6, part decode-run (limit 180 s): the runner (branch decode, commit in
# BUILT) on experiments/llm_own_fused.toml, bf16, prompt 512, 128 new, shortened protocol: Llama-3.2-1B b1
# with decode_kernels fused, gemv-pdl and gemv side by side; batch 8 with fused (the batch-8 path) for all
# three shapes; Qwen2.5-0.5B and SmolLM2-135M b1 with gemv-pdl and gemv. Then benchmarks/decode_ratios.py
# against PyTorch's compiled steps measured just before on this machine (decode-torch's
# /tmp/s6-torch/torch.jsonl: the same call) -> ratios.csv.
#   bash .s6/decode-run/run.sh $OUT          (from the repository root; carry .s6/decode-run)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s6/decode-run
W=/tmp/s6-decode-run
rm -rf "$W"   # a fresh run directory (the runner refuses one holding other files)
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-172}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt ratios.csv ratios.txt torch.jsonl; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
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
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/runner.xz" /tmp/s6-decode-runner && chmod +x /tmp/s6-decode-runner || exit 9
/tmp/s6-decode-runner --version >>"$W/gpu.txt" 2>&1
# PyTorch's lines from decode-torch (same warm machine, just before); without them, this call's bandwidth.
if [ -s /tmp/s6-torch/torch.jsonl ]; then
    cp /tmp/s6-torch/torch.jsonl "$W/torch.jsonl"
else
    echo "no /tmp/s6-torch/torch.jsonl: measuring the bandwidth only" >>"$W/steps.txt"
    timeout 20 python3 benchmarks/pytorch_decode.py --bandwidth --out "$W/torch.jsonl" >"$W/torch.txt" 2>&1
fi
# The templates the runner was built with (commit in BUILT), not the checkout's.
TPL=(); [ -d "$D/templates" ] && TPL=(--templates "$D/templates")
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
runner() {  # runner SECONDS NAME MODELS BATCHES
    local t; t=$(budget "$1")
    step "runner $2: models $3, batches $4 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 5 -s INT "$t" /tmp/s6-decode-runner experiments/llm_own_fused.toml --out "$W/run-$2" "${P[@]}" "${TPL[@]}" \
        --set "matrix.model=$3" --set "matrix.batch_size=$4" >"$W/run-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-$2" ] && [ ! -f "$W/run-$2/summary.csv" ]; then
        timeout 8 /tmp/s6-decode-runner report "$W/run-$2" "${TPL[@]}" >>"$W/run-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
}
# The fused path first in each run (a fault in a new kernel would poison the process after it).
runner 55 llama-b1 '["llama-3.2-1b-fused","llama-3.2-1b-gemv-pdl","llama-3.2-1b-gemv"]' '[1]'
runner 50 b8 '["llama-3.2-1b-fused","qwen2.5-0.5b-fused","smollm2-135m-fused"]' '[8]'
runner 30 qwen-b1 '["qwen2.5-0.5b-gemv-pdl","qwen2.5-0.5b-gemv"]' '[1]'
runner 28 smollm2-b1 '["smollm2-135m-gemv-pdl","smollm2-135m-gemv"]' '[1]'
step ratios
timeout 10 python3 benchmarks/decode_ratios.py "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
step done
