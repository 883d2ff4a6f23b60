#!/usr/bin/env bash
# Part layers-run (helper layers, session 8, issue 30's decode-isolated Σ), limit 130 s.
# The runner from branch layers8 (BUILT says the commit) on main's experiments/llm_own_layers.toml
# (SmolLM2-135M widths cut to 4 layers, bf16, b1) with protocol.layer_isolation = "in-step": cold
# rotating copies, and each top-level unit run after its step predecessor, its figures the pair's
# less the predecessor's own loop. Trimmed to fit 130 s: layer_method = ["isolated"] (session 6's
# prefix figures stand; call 1's timeline measured the longest prefix = the step), repeats = 1
# (one >= 1 s window per unit: the in-step units measure twice). Both phases, the whole model first.
set -uo pipefail
OUT=${1:?usage: go.sh OUT}
D=.s8/layers-run
W=/tmp/s8-layers-run
T0=$(date +%s)
rm -rf "$W"; mkdir -p "$W"
pack() {
  for f in steps.txt gpu.txt run-layers.log; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
  for f in per_layer.csv summary.csv report.md; do [ -f "$W/run-layers/$f" ] && cp "$W/run-layers/$f" "$OUT/"; done
  [ -d "$W/run-layers" ] && tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces run-layers 2>/dev/null
  true
}
trap pack EXIT
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,memory.total --format=csv >"$W/gpu.txt" 2>&1
date -u >>"$W/gpu.txt"; cat "$D/BUILT" >>"$W/gpu.txt"
timeout 30 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$D/runner.xz" "$W/runner" && chmod +x "$W/runner" || { echo "unpack failed" >>"$W/steps.txt"; exit 9; }
echo "unpacked at $(( $(date +%s) - T0 )) s" >>"$W/steps.txt"
LEFT=$(( 126 - ($(date +%s) - T0) ))
echo "== $(date -u +%T) llm_own_layers in-step isolated, SIGINT after ${LEFT} s" >>"$W/steps.txt"
timeout -k 3 -s INT "$LEFT" "$W/runner" run experiments/llm_own_layers.toml \
  --set protocol.layer_isolation=in-step --set 'matrix.layer_method=["isolated"]' --set protocol.repeats=1 \
  --out "$W/run-layers" >"$W/run-layers.log" 2>&1
echo "layers exit $? at $(( $(date +%s) - T0 )) s" >>"$W/steps.txt"
