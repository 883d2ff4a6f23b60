#!/usr/bin/env bash
# Session 10, part decode-twice (limit ~240 s; the call after decode-ratio, same warm machine): the runner's 12 cells of
# llm_own_ratio.toml again (run-2), so that the runner ran before and after PyTorch (the alternation) and twice
# (issue 30's "two runs within 3 % per cell" for the own decoder's graph cells); ratios.csv over both runs and
# `runner compare run-1 run-2`. Uses decode-ratio's runner and run-1 from /tmp when this machine still has them.
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s10/decode-ratio
W=/tmp/s10-ratio
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-240}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt ratios.csv ratios.txt compare.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    true
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
R=/tmp/s10-runner
step "twice: runner here: $([ -x $R ] && echo yes || echo no); run-1 here: $([ -f $W/run-1/summary.csv ] && echo yes || echo no)"
[ -x "$R" ] || { timeout 60 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/runner.xz" "$R" && chmod +x "$R"; } || { echo "no runner" >>"$W/steps.txt"; exit 9; }
EXP=/tmp/s10-exp/llm_own_ratio.toml
mkdir -p "$(dirname "$EXP")"
sed "s#\.\./datasets/#$PWD/datasets/#g" "$D/llm_own_ratio.toml" >"$EXP"
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
T=$(( LIMIT - ($(date +%s) - T0) - 20 ))
step "runner run-2: 12 cells (timeout $T s)"
rm -rf "$W/run-2"
timeout --foreground -k 5 -s INT "$T" "$R" "$EXP" --out "$W/run-2" "${P[@]}" >"$W/run-2.log" 2>&1
echo "runner exit $?" >>"$W/steps.txt"
if [ -d "$W/run-2" ] && [ ! -f "$W/run-2/summary.csv" ]; then
    timeout 10 "$R" report "$W/run-2" >>"$W/run-2.log" 2>&1; echo "report exit $?" >>"$W/steps.txt"
fi
step "compare + ratios"
[ -d "$W/run-1" ] && timeout 10 "$R" compare "$W/run-1" "$W/run-2" >"$W/compare.txt" 2>&1
[ -f "$W/torch.jsonl" ] && timeout 8 python3 "$D/decode_ratios.py" "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt" 2>/dev/null | head -30
step done
