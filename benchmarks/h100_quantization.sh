#!/usr/bin/env bash
# The quantization evidence on one GPU, serially (one workload on the GPU at a time):
#   1. experiments/quantization_sweep.toml: fp32/fp16/bf16/q8_0-fp16/q4_0-fp16/q4k-fp16 x batch 1-64
#   2. experiments/minilm_accuracy.toml: real all-MiniLM-L6-v2 weights + linear probe, accuracy
#      (waits until weights/all-MiniLM-L6-v2/model.safetensors exists: scripts/fetch-minilm.sh)
#   3. experiments/per_layer.toml, fp16 against q8_0-fp16 at batch 16: which layers gain most
# with nvidia-smi logging once a second beside them (never changing any GPU setting).
#
#   bash benchmarks/h100_quantization.sh OUT_DIR [RUNNER_BINARY]
#   PARTS="flagship minilm" bash benchmarks/h100_quantization.sh ...    # a subset
set -uo pipefail
PARTS=${PARTS:-flagship minilm layers}
want() { [[ " $PARTS " == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
OUT=${1:?usage: h100_quantization.sh OUT_DIR [RUNNER_BINARY]}
RUNNER=${2:-target/cuda/release/runner}
mkdir -p "$OUT"
nvidia-smi --query-gpu=timestamp,power.draw,temperature.gpu,clocks.sm,clocks.mem,pstate,utilization.gpu \
    --format=csv -l 1 >"$OUT/nvidia-smi.csv" 2>&1 &
SMI=$!
trap 'kill $SMI 2>/dev/null' EXIT

if want flagship; then
    "$RUNNER" experiments/quantization_sweep.toml --out "$OUT/flagship" >"$OUT/flagship.log" 2>&1
    echo "flagship exit $?" >>"$OUT/status"
fi
if want minilm; then
    for _ in $(seq 600); do
        [[ -f weights/all-MiniLM-L6-v2/model.safetensors ]] && break
        sleep 1
    done
    "$RUNNER" experiments/minilm_accuracy.toml --out "$OUT/minilm" >"$OUT/minilm.log" 2>&1
    echo "minilm exit $?" >>"$OUT/status"
fi
if want layers; then
    "$RUNNER" experiments/per_layer.toml --set 'matrix.precision=["fp16","q8_0-fp16"]' \
        --set 'matrix.batch_size=[16]' --out "$OUT/layers" >"$OUT/layers.log" 2>&1
    echo "layers exit $?" >>"$OUT/status"
fi
touch "$OUT/DONE"
