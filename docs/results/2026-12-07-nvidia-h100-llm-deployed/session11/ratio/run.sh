#!/usr/bin/env bash
# Session 11, part ratio (limit ~450 s): issue 30's ratio table on one GPU, in one call (session 10's H100 part, with
# gemv-lean cells added):
#   1. this call's HBM copy bandwidth (the floor's denominator);
#   2. the runner (branch s11 = main + opt-in gemv-lean) on llm_own_ratio.toml: SmolLM2-135M, Qwen2.5-0.5B,
#      Llama-3.2-1B bf16, prompt 512 + 128 new, gemv-fold at b1/b8, gemv-cluster and gemv-lean at b1, fused at b8
#      (12 cells (gemv-fold b1 left out: session 10 measured it)) = run-1;
#   3. PyTorch compiled (static cache, torch.compile reduce-overhead fullgraph) at the same shapes, Llama first;
#   4. ratios.csv (decode_ratios.py, which knows gemv-lean).
# Part twice (the next call) runs the 12 cells (gemv-fold b1 left out: session 10 measured it) again (run-2): the alternation's second half and "twice".
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s11/ratio
W=/tmp/s11-ratio
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s); LIMIT=${LIMIT_S:-450}
source .s11/unpack.sh
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt ratios.csv ratios.txt torch.jsonl; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    true
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {  # budget WANTED [RESERVE]
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-10} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 5 ] && t=0
    echo "$t"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat .s11/bin/BUILT >>"$W/gpu.txt" 2>/dev/null
step unxz
unpack runner || { echo "unxz failed" >>"$W/steps.txt"; exit 9; }
R=/tmp/s11/runner
"$R" --version >>"$W/gpu.txt" 2>&1
EXP=/tmp/s11-exp/llm_own_ratio.toml
mkdir -p "$(dirname "$EXP")"
sed "s#\.\./datasets/#$PWD/datasets/#g" "$D/llm_own_ratio.toml" >"$EXP"
step "bandwidth (timeout 20 s)"
timeout 20 python3 benchmarks/pytorch_decode.py --bandwidth --out "$W/torch.jsonl" >"$W/torch-bw.txt" 2>&1
echo "bandwidth exit $?" >>"$W/steps.txt"
cat "$W/torch.jsonl" >>"$W/steps.txt" 2>/dev/null
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
T=$(budget 215 225)
step "runner run-1: 12 cells (gemv-fold b1 left out: session 10 measured it) (timeout $T s)"
if [ "$T" != 0 ]; then
    timeout --foreground -k 5 -s INT "$T" "$R" "$EXP" --out "$W/run-1" "${P[@]}" >"$W/run-1.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-1" ] && [ ! -f "$W/run-1/summary.csv" ]; then
        timeout 10 "$R" report "$W/run-1" >>"$W/run-1.log" 2>&1; echo "report exit $?" >>"$W/steps.txt"
    fi
fi
# PyTorch, Llama first (its b1 is the floor's cell); each preset its own process so a cut keeps what finished.
for c in llama-3.2-1b:1,8 qwen2.5-0.5b:1,8 smollm2-135m:1,8; do
    T=$(budget 150 8)
    step "PyTorch compiled $c (timeout $T s)"
    [ "$T" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; continue; }
    timeout "$T" python3 benchmarks/pytorch_decode.py --ways compiled --window-s 1.5 --out "$W/torch.jsonl" "$c" \
        >>"$W/torch.txt" 2>&1
    echo "torch exit $?" >>"$W/steps.txt"
done
step ratios
timeout 8 python3 "$D/decode_ratios.py" "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt" | head -40
step done
