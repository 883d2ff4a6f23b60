#!/usr/bin/env bash
# serve, session 9, call 1, part serve-prefill (limit 270 s): issue 30's prefill target with main's default
# prefill_attention = "auto" (flash for bf16 on CUDA), never run on a GPU before (session 8 gave three b8 cells 34 s
# and none finished). Main's runner (.s9/bin/runner.xz, built from main's head by the coordinator).
# Per model, Llama-3.2-1B first, then Qwen2.5-0.5B, then SmolLM2-135M, alternating:
#   PyTorch's prefill + first token at b1 and b8 (benchmarks/pytorch_decode.py --ways compiled --prefill-only:
#   generate(1) on the static cache, eager prefill, as sessions 7-8), then the runner's own-decoder cells b1 and b8
#   (prefill.toml here: auto prefill attention, fused decode kernels, prompt 512 + 8 new tokens, 6 windows of
#   >= 0.5 s per phase, one process per model so a cut loses one model);
# then prefill_ratios.py -> ratios.csv (prefill ratio per cell, and whether the record says auto chose flash).
# Budgets: session 8's evidence is ~30 s before the first b8 Llama cell's third prefill window, and 15-18 s per b1
# cell on the H200 (session8-call2); so Llama's two cells get up to 100 s, Qwen's 58, SmolLM2's 48.
#   bash .s9/serve-prefill/run.sh $OUT        (from the repository root of main's tree)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
H=$(cd "$(dirname "$0")" && pwd)
ROOT=$PWD
W=/tmp/s9-serve-prefill
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-270}
RUNNER_XZ=${RUNNER_XZ:-$ROOT/.s9/bin/runner.xz}
PY=${PYTHON:-python3}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt ratios.csv ratios.txt torch.jsonl; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    true
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {  # budget WANTED [RESERVE]: seconds to give a step, never past the limit less RESERVE
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-4} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 6 ] && t=0
    echo "$t"
}
{ nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,memory.total \
    --format=csv; date -u; cat "$H/BUILT"; } >"$W/gpu.txt" 2>&1
step "unxz $RUNNER_XZ"
R=/tmp/s9-serve-prefill-runner
timeout 40 "$PY" -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$RUNNER_XZ" "$R" && chmod +x "$R" || { echo "unpack failed" >>"$W/steps.txt"; exit 9; }
"$R" --version >>"$W/gpu.txt" 2>&1
sed "s#\.\./datasets#$ROOT/datasets#" "$H/prefill.toml" >"$W/prefill.toml"

cell_times() {  # each record's wall time (started_at .. ended_at), for the estimate's evidence
    timeout 5 "$PY" - "$1" >>"$W/steps.txt" 2>&1 <<'PY'
import glob, json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
for p in sorted(glob.glob(sys.argv[1] + "/cells/*.json")):
    try:
        d = json.load(open(p)); c = d["cell"]
        g = d.get("generate") or {}
        print(f"  cell {c['id']} {c['model']} b{c['batch_size']}: {d['status']}, wall {(t(d['ended_at']) - t(d['started_at'])).total_seconds():.1f} s"
              f" ({d['started_at']} .. {d['ended_at']}), prefill windows {len(g.get('prefill_windows') or [])}, decode windows {len(d.get('windows') or [])};"
              f" prefill_attention: {(d.get('implementation') or {}).get('prefill_attention', '?')[:160]}")
    except Exception as e:
        print("  record", p, e)
PY
}
torch_step() {  # torch_step WANT PRESET
    local t; t=$(budget "$1" "$3")
    step "PyTorch prefill + first token, $2 b1,b8 (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 3 -s KILL "$t" "$PY" benchmarks/pytorch_decode.py --ways compiled --prefill-only --window-s 1.0 \
        --out "$W/torch.jsonl" "$2:1,8" >>"$W/torch.txt" 2>&1
    echo "torch exit $?" >>"$W/steps.txt"
}
runner_step() {  # runner_step WANT NAME MODEL RESERVE
    local t; t=$(budget "$1" "$4")
    step "runner $2: model $3, b1 and b8, auto prefill attention (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout -k 4 -s INT "$t" "$R" run "$W/prefill.toml" --out "$W/run-$2" --set "matrix.model=[\"$3\"]" \
        >"$W/run-$2.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-$2" ] && [ ! -f "$W/run-$2/summary.csv" ]; then
        timeout 10 "$R" report "$W/run-$2" >>"$W/run-$2.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
    cell_times "$W/run-$2"
}
# RESERVE: a torch step leaves room for its own model's runner (the two make one ratio); the runner steps take what
# is left, so a shortened LIMIT_S cuts the last model first.
torch_step 18 llama-3.2-1b 40
runner_step 100 llama llama-3.2-1b-fused 4
torch_step 18 qwen2.5-0.5b 30
runner_step 58 qwen qwen2.5-0.5b-fused 4
torch_step 18 smollm2-135m 25
runner_step 48 smollm2 smollm2-135m-fused 4
step ratios
timeout 10 "$PY" "$H/prefill_ratios.py" "$W/torch.jsonl" "$W"/run-* --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
echo "ratios exit $?" >>"$W/steps.txt"
cat "$W/ratios.txt"
step done
