#!/usr/bin/env bash
# The reference comparison, run on the GPU machine: a runner experiment (default the flagship; the
# speed benchmark is experiments/pytorch_comparison.toml) and PyTorch eager and torch.compile fp16 on
# the same shapes, one after the other on the same GPU, then the ratio table.
#
#   bash benchmarks/compare_pytorch.sh RUNNER_BINARY OUT_DIR [EXPERIMENT]
#
# Both measure latency as the median of synchronized forward passes and energy per inference from
# NVML's total-energy counter over windows of several seconds (gross, idle included).
set -euo pipefail
runner=$1
out=$2
experiment=${3:-experiments/quantization_sweep.toml}
mkdir -p "$out"
batches=$(python3 -c "import tomllib,sys; m=tomllib.load(open('$experiment','rb'))['matrix']; print(','.join(str(b) for b in m['batch_size']))")
precisions=$(python3 -c "import tomllib,sys; m=tomllib.load(open('$experiment','rb'))['matrix']; print(','.join(m['precision']))")
"$runner" "$experiment" --out "$out/run"
# PyTorch eager in the experiment's float precisions, and torch.compile in fp16.
floats=$(echo "$precisions" | tr ',' '\n' | grep -E '^(fp32|fp16|bf16)$' | paste -sd,)
python3 benchmarks/pytorch_reference.py "$out/torch.jsonl" --batch-sizes "$batches" --precisions "$floats" --compile-precisions fp16
python3 benchmarks/ratios.py "$out/torch.jsonl" "$out/run/summary.csv" | tee "$out/ratios.md"
