#!/usr/bin/env bash
# runner b1 cells on main 4671fbd's llm_own_fused.toml (main's checkout moved on), then ratios against /tmp/s7-torch.
set -uo pipefail
OUT=$1; W=/tmp/s7-r; rm -rf $W; mkdir -p $W
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75 --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
timeout -k 5 -s INT ${B1_S:-95} /tmp/s7-runner experiments/s7tmp_fused.toml --out $W/run-b1 "${P[@]}" \
  --set 'matrix.model=["llama-3.2-1b-fused","llama-3.2-1b-gemv-pdl","qwen2.5-0.5b-fused","qwen2.5-0.5b-gemv-pdl","smollm2-135m-gemv-pdl"]' --set 'matrix.batch_size=[1]' >$W/run-b1.log 2>&1
echo "runner exit $?" | tee $W/steps.txt
[ -f $W/run-b1/summary.csv ] || timeout 8 /tmp/s7-runner report $W/run-b1 >>$W/run-b1.log 2>&1
timeout 10 python3 benchmarks/decode_ratios.py /tmp/s7-torch/torch.jsonl $W/run-b1/summary.csv --out $W/ratios.csv | tee $W/ratios.txt
tar -C $W -czf $OUT/results.tar.gz --exclude=charts --exclude='*.html' --exclude=traces .
