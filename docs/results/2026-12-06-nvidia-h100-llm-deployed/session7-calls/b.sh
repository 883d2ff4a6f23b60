#!/usr/bin/env bash
# Coordinator, session 7, call 1 part b (limit ~420 s), main's runner (unpacked by part a in /tmp/s7-runner,
# or from .s7/c1/runner.xz): (1) experiments/llm_own_prefill.toml at batch 8, prefill_attention = "flash" and
# plain per preset (Llama first), short windows and 32 new tokens (the prefill is the point), ratios against
# PyTorch's prefill + first token measured by part a on this machine; (2) experiments/llm_decode.toml twice
# (bf16 b1, the three shapes, windows halved) and `runner compare` of the two runs.
set -uo pipefail
OUT=${1:?usage: b.sh OUT}
D=${D:-.s7/c1}   # the folder holding runner.xz and BUILT
W=/tmp/s7-b
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-415}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt ratios.csv ratios.txt compare.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
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
[ -x /tmp/s7-runner ] || { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/runner.xz" /tmp/s7-runner && chmod +x /tmp/s7-runner; } || exit 9
/tmp/s7-runner --version >>"$W/gpu.txt" 2>&1
P=(--set protocol.warmup_s=0.1 --set protocol.warmup_min_loops=2 --set protocol.warmup_max_s=1.0
   --set protocol.stabilize_s=0.05 --set protocol.min_window_s=0.25 --set protocol.min_loops=2
   --set protocol.repeats=3 --set protocol.idle_settle_s=0.3 --set protocol.idle_baseline_s=0.5
   --set 'matrix.new_tokens=[32]')
prefill() {  # prefill SECONDS NAME MODELS BATCHES
    local t; t=$(budget "$1")
    step "prefill $2: models $3, batches $4 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 3 -s INT "$t" /tmp/s7-runner experiments/llm_own_prefill.toml --out "$W/prefill-$2" "${P[@]}" \
        --set "matrix.model=$3" --set "matrix.batch_size=$4" >"$W/prefill-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/prefill-$2" ] && [ ! -f "$W/prefill-$2/summary.csv" ]; then
        timeout 8 /tmp/s7-runner report "$W/prefill-$2" >>"$W/prefill-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
}
prefill 45 llama-b8 '["llama-3.2-1b-flash","llama-3.2-1b-fused"]' '[8]'
prefill 40 qwen-b8 '["qwen2.5-0.5b-flash","qwen2.5-0.5b-fused"]' '[8]'
prefill 40 smollm2-b8 '["smollm2-135m-flash","smollm2-135m-fused"]' '[8]'
step "prefill ratios"
cp /tmp/s7-torch/torch.jsonl "$W/torch.jsonl" 2>/dev/null || echo "no /tmp/s7-torch/torch.jsonl" >>"$W/steps.txt"
timeout 10 python3 benchmarks/decode_ratios.py "$W/torch.jsonl" "$W"/prefill-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
S=(--set 'matrix.precision=["bf16"]' --set 'matrix.batch_size=[1]' --set protocol.warmup_s=1.0 --set protocol.min_window_s=1.5 --set protocol.min_loops=2)
for i in 1 2; do
    t=$(budget 140 12)
    step "llm_decode run $i (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; continue; }
    timeout -k 8 -s INT "$t" /tmp/s7-runner run experiments/llm_decode.toml --out "$W/decode$i" "${S[@]}" >"$W/decode$i.log" 2>&1
    echo "run $i exit $?" >>"$W/steps.txt"
done
step compare
timeout 15 /tmp/s7-runner compare "$W/decode1" "$W/decode2" >"$W/compare.txt" 2>&1
echo "compare exit $?" >>"$W/steps.txt"
cat "$W/compare.txt"
step done
