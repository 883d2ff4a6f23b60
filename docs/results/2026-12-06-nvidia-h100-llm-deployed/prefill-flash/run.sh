#!/usr/bin/env bash
# Helper "prefill", part prefill-run (limit 60 s): the runner from branch prefill (commit in BUILT) on
# experiments/llm_own_prefill.toml: per preset one process with its b8 cells, prefill_attention = "flash"
# first, then the plain prefill (both with the fused decode kernels), Llama-3.2-1B first (the widest miss);
# then b1 with flash for the three if time is left. Short windows (the prefill ratio is the point), 32 new
# tokens. The ratio table against PyTorch's prefill + first token from part decode-torch
# (/tmp/s6-torch/torch.jsonl, same machine, just before).
#   bash .s6/prefill-run/run.sh $OUT
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s6/prefill-run
W=/tmp/s6-prefill/run
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-56}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt ratios.csv ratios.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    cat "$W"/run-*.log >"$OUT/runs.log" 2>/dev/null
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-3} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 4 ] && t=0
    echo "$t"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt"
grep -h "prefill_checks\|FAIL" /tmp/s6-prefill/check.txt >>"$W/gpu.txt" 2>/dev/null || echo "no check result on this machine" >>"$W/gpu.txt"
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$D/runner.xz" /tmp/prefill-runner && chmod +x /tmp/prefill-runner || exit 9
/tmp/prefill-runner --version >>"$W/gpu.txt" 2>&1
P=(--set protocol.warmup_s=0.1 --set protocol.warmup_min_loops=2 --set protocol.warmup_max_s=1.0
   --set protocol.stabilize_s=0.05 --set protocol.min_window_s=0.25 --set protocol.min_loops=2
   --set protocol.repeats=3 --set protocol.idle_settle_s=0.3 --set protocol.idle_baseline_s=0.5
   --set 'matrix.new_tokens=[32]' --templates "$D/templates")
runner() {  # runner SECONDS NAME MODELS BATCHES
    local t; t=$(budget "$1")
    step "runner $2: models $3, batches $4 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 3 -s INT "$t" /tmp/prefill-runner experiments/llm_own_prefill.toml --out "$W/run-$2" "${P[@]}" \
        --set "matrix.model=$3" --set "matrix.batch_size=$4" >"$W/run-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-$2" ] && [ ! -f "$W/run-$2/summary.csv" ]; then
        timeout 5 /tmp/prefill-runner report "$W/run-$2" --templates "$D/templates" >>"$W/run-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
}
runner 18 llama-b8 '["llama-3.2-1b-flash","llama-3.2-1b-fused"]' '[8]'
runner 14 qwen-b8 '["qwen2.5-0.5b-flash","qwen2.5-0.5b-fused"]' '[8]'
runner 14 smollm2-b8 '["smollm2-135m-flash","smollm2-135m-fused"]' '[8]'
runner 14 flash-b1 '["llama-3.2-1b-flash","qwen2.5-0.5b-flash","smollm2-135m-flash"]' '[1]'
step ratios
cp /tmp/s6-torch/torch.jsonl "$W/torch.jsonl" 2>/dev/null || echo "no /tmp/s6-torch/torch.jsonl" >>"$W/steps.txt"
timeout 5 python3 benchmarks/decode_ratios.py "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
step done
