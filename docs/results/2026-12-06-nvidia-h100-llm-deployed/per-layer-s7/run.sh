#!/usr/bin/env bash
# Part layers-run (helper layers, issue 30, session 7), limit 170 s: the runner from branch
# `layers7` (commit in BUILT) on main's experiments/llm_own_layers.toml (SmolLM2-135M's widths cut
# to 4 layers, bf16, b1) with protocol.layer_isolation = "cold" (each isolated unit's calls rotate
# through deep copies of its weights and KV cache, C x bytes > 2x the GPU's L2).
# Trimmed: layer_method = ["isolated"] (the prefixes run no copies: session 6's prefix figures
# stand; both methods took 160 s). Both phases, the whole-model cell first. Templates from this
# folder (--templates).
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s7/layers-run
W=/tmp/s7-layers
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
LEFT=$(( 165 - ($(date +%s) - T0) ))
echo "== $(date -u +%T) llm_own_layers cold isolated, SIGINT after ${LEFT} s" >>"$W/steps.txt"
timeout -k 4 -s INT "$LEFT" "$W/runner" run experiments/llm_own_layers.toml \
  --set protocol.layer_isolation=cold --set 'matrix.layer_method=["isolated"]' \
  --templates "$D/templates" --out "$W/run-layers" >"$W/run-layers.log" 2>&1
echo "layers exit $? at $(( $(date +%s) - T0 )) s" >>"$W/steps.txt"
