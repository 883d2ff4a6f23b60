#!/usr/bin/env bash
# Session 11, part twice (limit ~200 s; the call after part ratio, same warm machine if possible): the runner's 15 cells
# of llm_own_ratio.toml again (run-2): the runner before and after PyTorch (the alternation) and twice (issue 30's "two
# runs within 3 % per cell" for the own decoder's graph cells); ratios.csv over both runs and `runner compare`.
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s11/ratio
W=/tmp/s11-ratio
mkdir -p "$W"
T0=$(date +%s); LIMIT=${LIMIT_S:-200}
source .s11/unpack.sh
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces --exclude='run-1' . 2>/dev/null
    for f in steps.txt ratios.csv ratios.txt compare.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    true
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
step "twice: runner here: $([ -x /tmp/s11/runner ] && echo yes || echo no); run-1 here: $([ -f $W/run-1/summary.csv ] && echo yes || echo no)"
unpack runner || { echo "no runner" >>"$W/steps.txt"; exit 9; }
R=/tmp/s11/runner
EXP=/tmp/s11-exp/llm_own_ratio.toml
mkdir -p "$(dirname "$EXP")"
sed "s#\.\./datasets/#$PWD/datasets/#g" "$D/llm_own_ratio.toml" >"$EXP"
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
T=$(( LIMIT - ($(date +%s) - T0) - 15 ))
step "runner run-2: 15 cells (timeout $T s)"
rm -rf "$W/run-2"
timeout --foreground -k 5 -s INT "$T" "$R" "$EXP" --out "$W/run-2" "${P[@]}" >"$W/run-2.log" 2>&1
echo "runner exit $?" >>"$W/steps.txt"
if [ -d "$W/run-2" ] && [ ! -f "$W/run-2/summary.csv" ]; then
    timeout 10 "$R" report "$W/run-2" >>"$W/run-2.log" 2>&1; echo "report exit $?" >>"$W/steps.txt"
fi
step "compare + ratios"
[ -d "$W/run-1" ] && timeout 10 "$R" compare "$W/run-1" "$W/run-2" >"$W/compare.txt" 2>&1
[ -f "$W/torch.jsonl" ] && timeout 8 python3 "$D/decode_ratios.py" "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt" 2>/dev/null | head -40
step done
