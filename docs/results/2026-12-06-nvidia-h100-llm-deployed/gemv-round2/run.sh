#!/usr/bin/env bash
# Issue 30, helper "decode", round 2, part B (limit 190 s): the runner's decode step with the revised decode
# GEMV (bd675c0: up to 4 rows a warp, SwiGLU once) against the fused path in the same call, every shape at
# batch 1 and 8; the HBM copy bandwidth (cheap) for the floor; PyTorch's compiled steps come from round 1
# (same machine type, torch-round1.jsonl) unless time is left for a same-call Llama-3.2-1B b1 at the end.
#   bash .s5/decode-run2/run.sh $OUT          (from the repository root; carry .s5/decode-run2)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s5/decode-run2
W=/tmp/decode-run2
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-182}   # the call's 190 s less the final pack
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt torch.txt torch.jsonl ratios.csv ratios.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-6} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 5 ] && t=0
    echo "$t"
}
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
unxz "$D/runner.xz" /tmp/decode-runner2 || exit 9
/tmp/decode-runner2 --version >>"$W/gpu.txt" 2>&1
TPL=(); [ -d "$D/templates" ] && TPL=(--templates "$D/templates")
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
runner() {  # runner SECONDS NAME MODELS BATCHES
    local t; t=$(budget "$1")
    step "runner $2: models $3, batches $4 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 5 -s INT "$t" /tmp/decode-runner2 experiments/llm_own_fused.toml --out "$W/run-$2" "${P[@]}" "${TPL[@]}" \
        --set "matrix.model=$3" --set "matrix.batch_size=$4" >"$W/run-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-$2" ] && [ ! -f "$W/run-$2/summary.csv" ]; then
        timeout 10 /tmp/decode-runner2 report "$W/run-$2" "${TPL[@]}" >>"$W/run-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
}
# PyTorch's round-1 steps (H100, 10:22-10:28 UTC), less their bandwidth line: this call measures its own.
grep -v '"kind": "bandwidth"' "$D/torch-round1.jsonl" >"$W/torch.jsonl"
step "bandwidth"
timeout "$(budget 25)" python3 benchmarks/pytorch_decode.py --bandwidth --out "$W/torch.jsonl" >>"$W/torch.txt" 2>&1
echo "bandwidth exit $?" >>"$W/steps.txt"
# The fused path first in each run: a fault in a new kernel would poison the process.
runner "${RUN_LLAMA1_S:-30}" llama-b1 '["llama-3.2-1b-fused","llama-3.2-1b-gemv"]' '[1]'
runner "${RUN_LLAMA8_S:-30}" llama-b8 '["llama-3.2-1b-fused","llama-3.2-1b-gemv"]' '[8]'
runner "${RUN_QWEN_S:-55}" qwen '["qwen2.5-0.5b-fused","qwen2.5-0.5b-gemv"]' '[1,8]'
runner "${RUN_SMOL_S:-55}" smollm2 '["smollm2-135m-fused","smollm2-135m-gemv"]' '[1,8]'
step ratios
python3 benchmarks/decode_ratios.py "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
step done
