#!/usr/bin/env bash
# The reference comparison, run on the GPU machine: a runner experiment (default the flagship; the
# speed benchmark is experiments/pytorch_comparison.toml) and PyTorch eager, torch.compile and
# torch.compile(mode="reduce-overhead") (CUDA graphs) in fp16 and bf16 on the same shapes,
# alternating on the same GPU for ROUNDS rounds (default 2), then the ratio table of the medians
# over rounds against the best PyTorch figure per cell (ratios.md, ratios.csv).
#
#   ROUNDS=2 bash benchmarks/compare_pytorch.sh RUNNER_BINARY OUT_DIR [EXPERIMENT]
#
# Both measure latency as the median of synchronized forward passes and energy per inference from
# NVML's total-energy counter over windows of several seconds (gross, idle included). Alternating
# rounds, because PyTorch's own latencies moved by up to 1.7x between fresh machines: one round
# each would compare whichever state the GPU was in. Each round's files are kept (run-N/,
# torch-N.jsonl), so a call that runs out of time still leaves complete rounds.
set -euo pipefail
runner=$1
out=$2
experiment=${3:-experiments/quantization_sweep.toml}
rounds=${ROUNDS:-2}
mkdir -p "$out"
matrix() { python3 -c "import tomllib; m=tomllib.load(open('$experiment','rb'))['matrix']; print(','.join(str(v) for v in m['$1']))"; }
batches=$(matrix batch_size)
# PyTorch eager in the experiment's float precisions, torch.compile (default and reduce-overhead)
# in its half precisions (COMPILE_MODES overrides the modes).
floats=$(matrix precision | tr ',' '\n' | grep -E '^(fp32|fp16|bf16)$' | paste -sd,)
halves=$(matrix precision | tr ',' '\n' | grep -E '^(fp16|bf16)$' | paste -sd,)
modes=${COMPILE_MODES:-default,reduce-overhead}
for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds: runner"
    "$runner" "$experiment" --out "$out/run-$round"
    echo "== round $round of $rounds: PyTorch"
    python3 benchmarks/pytorch_reference.py "$out/torch-$round.jsonl" --batch-sizes "$batches" \
        --precisions "$floats" --compile-precisions "$halves" --compile-modes "$modes"
done
python3 benchmarks/ratios.py --torch "$out"/torch-*.jsonl --runner "$out"/run-*/summary.csv \
    --csv "$out/ratios.csv" | tee "$out/ratios.md"
