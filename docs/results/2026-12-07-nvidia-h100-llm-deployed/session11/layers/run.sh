#!/usr/bin/env bash
# Session 11, part layers (limit ~250 s): issue 30's per-layer target (Σ of the decoder's layers within ±3 % of the
# whole model in energy and latency, prefill and decode, both methods) with the full protocol's median: branch s11's
# runner on main's experiments/llm_own_layers.toml (SmolLM2-135M's widths cut to 4 layers, bf16, b1, prompt 512 + 128),
# its protocol as written (3 windows of >= 0.5 s per unit and phase), in two runs so that a cut loses one method:
#   A  protocol.layer_isolation = "in-step", layer_method = ["isolated"]   (~160 s, session 9's estimate)
#   B  layer_method = ["prefix"]                                              (~65 s)
# each with its whole-model cell; then sigma.txt: each run's Σ/whole table and the layers cells' flags.
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
H=$(cd "$(dirname "$0")" && pwd)
ROOT=$PWD
W=/tmp/s11-layers
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-250}
source .s11/unpack.sh
PY=${PYTHON:-python3}
pack() {
    for f in steps.txt gpu.txt sigma.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    for m in isolated prefix; do [ -f "$W/run-$m/per_layer.csv" ] && cp "$W/run-$m/per_layer.csv" "$OUT/per_layer-$m.csv"; done
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    true
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {  # budget WANTED [RESERVE]
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-4} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 6 ] && t=0
    echo "$t"
}
{ nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,memory.total \
    --format=csv; date -u; cat .s11/bin/BUILT; } >"$W/gpu.txt" 2>&1
step "unxz"
unpack runner || { echo "unpack failed" >>"$W/steps.txt"; exit 9; }
R=/tmp/s11/runner
"$R" --version >>"$W/gpu.txt" 2>&1
# main's file, its relative dataset paths made absolute (a copy beside the run)
sed "s#\.\./datasets#$ROOT/datasets#" experiments/llm_own_layers.toml >"$W/llm_own_layers.toml"

sigma() {  # sigma NAME: the report's Σ/whole lines and table, the layers cells' flags, each cell's wall time
    {
        echo "### run-$1 ($(date -u +%T))"
        grep -h "^Σ layers\|^| phase | method\|^| prefill | \(isolated\|prefix\)\|^| decode | \(isolated\|prefix\)" "$W/run-$1/report.md" 2>/dev/null
        timeout 5 "$PY" - "$W/run-$1" <<'PY'
import csv, glob, json, sys
from datetime import datetime
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
for p in sorted(glob.glob(sys.argv[1] + "/cells/*.json")):
    try:
        d = json.load(open(p)); c = d["cell"]
        n = len(d.get("windows") or [])
        units = d.get("layers") or []
        pre = d.get("prefixes") or []
        wins = sorted({len(u.get("windows") or []) for u in units + pre})
        print(f"cell {c['id']} scope {c['scope']} {d['status']}: wall {(t(d['ended_at']) - t(d['started_at'])).total_seconds():.1f} s, "
              f"{n} whole windows, {len(units)} unit records, {len(pre)} prefix records, windows per unit/prefix {wins}")
    except Exception as e:
        print("record", p, type(e).__name__, e)
try:
    for row in csv.DictReader(open(sys.argv[1] + "/summary.csv")):
        if row.get("scope") == "layers":
            print(f"layers cell {row['cell_id']} flags: {row.get('flags', '')} {row.get('reason', '')}")
except OSError as e:
    print("no summary.csv:", e)
PY
        grep -h "estimated ~\|wall time\|the estimate before" "$W/run-$1.log" 2>/dev/null
    } >>"$W/sigma.txt" 2>&1
}
layers() {  # layers WANT NAME RESERVE ARGS...
    local want=$1 name=$2 reserve=$3; shift 3
    local t; t=$(budget "$want" "$reserve")
    step "runner $name: llm_own_layers.toml $* (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; return; }
    timeout --foreground -k 4 -s INT "$t" "$R" run "$W/llm_own_layers.toml" --out "$W/run-$name" "$@" >"$W/run-$name.log" 2>&1
    echo "runner exit $?" >>"$W/steps.txt"
    if [ -d "$W/run-$name" ] && [ ! -f "$W/run-$name/summary.csv" ]; then
        timeout 10 "$R" report "$W/run-$name" >>"$W/run-$name.log" 2>&1
        echo "report exit $?" >>"$W/steps.txt"
    fi
    sigma "$name"
}
layers 165 isolated 66 --set protocol.layer_isolation=in-step --set 'matrix.layer_method=["isolated"]'
layers 80 prefix 4 --set 'matrix.layer_method=["prefix"]'
step done
cat "$W/sigma.txt"
