#!/usr/bin/env bash
# Issue 30, helper "decode", session 8, part decode-run (limit 100 s): this call's copy bandwidth
# (benchmarks/pytorch_decode.py --bandwidth), then the runner (branch decode8, commit in BUILT) on
# llm_own_fold.toml (carried here; its dataset paths made absolute in a copy under /tmp), bf16, prompt 512,
# 128 new, shortened protocol: Llama-3.2-1B b1 with decode_kernels fused (first), gemv-fold and gemv-pdl
# side by side; then Qwen2.5-0.5B and SmolLM2-135M b1 with gemv-fold while time is left; then
# benchmarks/decode_ratios.py -> ratios.csv (x_floor: each cell against its memory floor at this call's
# bandwidth; floor_met for Llama b1).
#   bash .s8/decode-run/run.sh $OUT          (from the repository root; carry .s8/decode-run)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s8/decode-run
W=/tmp/s8-decode-run
rm -rf "$W"   # a fresh run directory (the runner refuses one holding other files)
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-97}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt ratios.csv ratios.txt torch.jsonl; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-10} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 5 ] && t=0
    echo "$t"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/runner.xz" /tmp/s8-decode-runner && chmod +x /tmp/s8-decode-runner || exit 9
/tmp/s8-decode-runner --version >>"$W/gpu.txt" 2>&1
# The experiment file is not on main's tree: a copy whose relative dataset paths point at this checkout.
EXP=/tmp/s8-decode-run-exp/llm_own_fold.toml
mkdir -p "$(dirname "$EXP")"
sed "s#\.\./datasets/#$PWD/datasets/#g" "$D/llm_own_fold.toml" >"$EXP"
step "bandwidth (timeout 20 s)"
timeout 20 python3 benchmarks/pytorch_decode.py --bandwidth --out "$W/torch.jsonl" >"$W/torch.txt" 2>&1
echo "bandwidth exit $?" >>"$W/steps.txt"
cat "$W/torch.jsonl" >>"$W/steps.txt" 2>/dev/null
# The templates the runner was built with (commit in BUILT), not the checkout's.
TPL=(); [ -d "$D/templates" ] && TPL=(--templates "$D/templates")
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
runner() {  # runner SECONDS NAME MODELS BATCHES
    local t; t=$(budget "$1" 3)
    step "runner $2: models $3, batches $4 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 5 -s INT "$t" /tmp/s8-decode-runner "$EXP" --out "$W/run-$2" "${P[@]}" "${TPL[@]}" \
        --set "matrix.model=$3" --set "matrix.batch_size=$4" >"$W/run-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-$2" ] && [ ! -f "$W/run-$2/summary.csv" ]; then
        timeout 8 /tmp/s8-decode-runner report "$W/run-$2" "${TPL[@]}" >>"$W/run-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
}
# The fused path first (a fault in a new kernel would poison the process after it), then gemv-fold
# (the cell this part is for) before gemv-pdl, in case the budget cuts the third.
runner 62 llama-b1 '["llama-3.2-1b-fused","llama-3.2-1b-gemv-fold","llama-3.2-1b-gemv-pdl"]' '[1]'
runner 34 others-b1 '["smollm2-135m-gemv-fold","qwen2.5-0.5b-gemv-fold"]' '[1]'
step ratios
timeout 8 python3 "$D/decode_ratios.py" "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
step done
