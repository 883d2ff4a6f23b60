#!/usr/bin/env bash
# Session 12, part bound (limit ~90 s): what a CUDA-graph boundary costs a decode step (issue 30's decode Σ of
# isolated units, 96 % of the whole step: the units replay K calls per graph, the whole cell one graph per step).
# decode_check boundary PRESET LAYERS WAY (examples/decode_check/boundary.rs, branch s12): the same fixed step
# captured 1, 2, 8, 32 steps to a graph, 128 steps a sample, alternated, median of 5; the last logits of each
# must equal the one-step graph's. First the per-layer run's model (SmolLM2-135M cut to 4 layers, plain decode
# kernels, as experiments/llm_own_layers.toml), then the same with gemv-cluster, then Llama-3.2-1B gemv-lean.
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
T0=$(date +%s); LIMIT=${LIMIT_S:-90}
source .s12/unpack.sh
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv >"$OUT/steps.txt" 2>&1
cat .s12/bin/BUILT >>"$OUT/steps.txt"
unpack decode_check2
for a in "smollm2-135m 4 plain" "smollm2-135m 4 gemv-cluster" "llama-3.2-1b all gemv-lean"; do
  T=$(( LIMIT - ($(date +%s) - T0) - 3 )); [ $T -lt 8 ] && { echo "skipped $a" >>"$OUT/steps.txt"; continue; }
  echo "== $(date -u +%T) boundary $a (timeout $T s)" >>"$OUT/steps.txt"
  timeout -s KILL "$T" /tmp/s12/decode_check2 boundary $a >>"$OUT/boundary.txt" 2>&1
  echo "exit $?" >>"$OUT/steps.txt"
done
cat "$OUT/boundary.txt"
