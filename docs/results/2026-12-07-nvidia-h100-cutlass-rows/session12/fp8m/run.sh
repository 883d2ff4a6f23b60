#!/usr/bin/env bash
# Session 12 part fp8m (limit ~85 s; an EXPERIMENT binary, runner_x = branch s12 + two environment knobs in
# src/model/encoder/calibrate.rs, not landed): what costs fp8-fp16 its cosine under static FFN steps (0.99785,
# against 0.99912 with dynamic FFN scales): fp8-fp16 b16, the flagship keys, FFN steps per column with margin 1
# (today), 2 and 4; one step per tensor (the largest column's) with margin 1 and 2; dynamic FFN scales. Short
# windows: the cosine is the result. Every step under `timeout`.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
LIM=${LIMIT_S:-85}
W=/tmp/s12-fp8m; rm -rf $W; mkdir -p $W "$FINAL"
pack() { first=1; : >"$FINAL/summaries.csv"
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] || continue; s=$(basename "$r"); s=${s#run-}
           if [ $first = 1 ]; then sed -n '1s/^/step,/p' "$r/summary.csv" >>"$FINAL/summaries.csv"; first=0; fi
           sed -n "2,\$s/^/$s,/p" "$r/summary.csv" >>"$FINAL/summaries.csv"; done
         tail -n 30 $W/run-*.log >"$FINAL/logs.txt" 2>/dev/null; cp $W/steps.txt "$FINAL/" 2>/dev/null; true; }
trap pack EXIT
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt
source .s12/unpack.sh
unpack runner_x || { echo "no runner" >>$W/steps.txt; exit 9; }
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16]' --set 'matrix.precision=["fp8-fp16"]'
   --set protocol.warmup_s=0.2 --set protocol.min_window_s=0.3 --set protocol.repeats=1
   --set protocol.idle_baseline_s=0.3 --set protocol.idle_settle_s=0.1 --set protocol.stabilize_s=0.1
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean)
run() { local name=$1 limit=$2; shift 2
  local left=$(( LIM - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 2 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $name: $*" >>$W/steps.txt
  env "${ENVS[@]}" timeout --foreground -k 3 -s INT $limit /tmp/s12/runner_x experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "$name exit $?" >>$W/steps.txt
  grep -h 's12 experiment' $W/run-$name.log | sort | uniq -c | head -3 >>$W/steps.txt; pack; }
F=(--set device.attention_padding=skip --set device.attention_activation_scales=static)
ENVS=(X=1); run a-static-m1 24 "${F[@]}" --set device.ffn_activation_scales=static
ENVS=(RUNNER_S12_E4M3_MARGIN=2); run b-static-m2 20 "${F[@]}" --set device.ffn_activation_scales=static
ENVS=(RUNNER_S12_E4M3_MARGIN=4); run c-static-m4 20 "${F[@]}" --set device.ffn_activation_scales=static
ENVS=(RUNNER_S12_E4M3_TENSOR=1); run d-tensor-m1 20 "${F[@]}" --set device.ffn_activation_scales=static
ENVS=(RUNNER_S12_E4M3_TENSOR=1 RUNNER_S12_E4M3_MARGIN=2); run e-tensor-m2 20 "${F[@]}" --set device.ffn_activation_scales=static
ENVS=(X=1); run f-dynamic 20 "${F[@]}"
cut -d, -f1-200 "$FINAL/summaries.csv" | python3 -c "
import csv,sys
r=csv.DictReader(sys.stdin)
for x in r:
    print(x['step'], x['precision'], x['batch_size'], x.get('latency_per_loop_ms'), x.get('fidelity_cosine_vs_fp32'), x.get('fidelity_cosine_min') or x.get('fidelity_cosine_vs_fp32_min'), x.get('fidelity_label_agreement'))
" 2>&1 | tee $W/fid.txt; cp $W/fid.txt "$FINAL/"
