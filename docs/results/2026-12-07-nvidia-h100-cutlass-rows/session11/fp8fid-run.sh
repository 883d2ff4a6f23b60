#!/usr/bin/env bash
# Session 11 part fp8fid (limit 45 s, optional; branch s11's runner from .s11/bin, pair_norms off): which key costs fp8's cosine (0.99785 in session 9's H200 call with
# the flagship keys, 0.99912 in session 8's H100 call with other keys). fp8-fp16 at b16 with the
# flagship keys (a), then one key back to its default each: attention_activation_scales = dynamic
# (b), ffn_activation_scales = dynamic (c), attention_padding = compute (d). Short windows: the
# cosine and labels are the result, not the timings. Every step under `timeout`.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
LIM=${LIMIT_S:-45}
W=/tmp/s11-fp8fid; rm -rf $W; mkdir -p $W "$FINAL"
pack() { first=1; : >"$FINAL/summaries.csv"
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] || continue; s=$(basename "$r"); s=${s#run-}
           if [ $first = 1 ]; then sed -n '1s/^/step,/p' "$r/summary.csv" >>"$FINAL/summaries.csv"; first=0; fi
           sed -n "2,\$s/^/$s,/p" "$r/summary.csv" >>"$FINAL/summaries.csv"; done
         tail -n 30 $W/run-*.log >"$FINAL/logs.txt" 2>/dev/null; cp $W/steps.txt "$FINAL/" 2>/dev/null; true; }
trap pack EXIT
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt
source .s11/unpack.sh
unpack runner || { echo "no runner" >>$W/steps.txt; exit 9; }
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16]' --set 'matrix.precision=["fp8-fp16"]'
   --set protocol.warmup_s=0.2 --set protocol.min_window_s=0.3 --set protocol.repeats=1
   --set protocol.idle_baseline_s=0.3 --set protocol.idle_settle_s=0.1 --set protocol.stabilize_s=0.1
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean)
run() { local name=$1 limit=$2; shift 2
  local left=$(( LIM - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 2 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $name: $*" >>$W/steps.txt
  timeout --foreground -k 3 -s INT $limit /tmp/s11/runner experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "$name exit $?" >>$W/steps.txt; pack; }
run a-flagship 12 --set device.attention_padding=skip --set device.attention_activation_scales=static --set device.ffn_activation_scales=static
run b-attn-dynamic 10 --set device.attention_padding=skip --set device.ffn_activation_scales=static
run c-ffn-dynamic 10 --set device.attention_padding=skip --set device.attention_activation_scales=static
run d-padding-compute 10 --set device.attention_activation_scales=static --set device.ffn_activation_scales=static
