#!/usr/bin/env bash
# Part flag (session 17; limit ~230 s): branch s15 4d377c8 (the 128x96 and stream-K int8 kernels as tactic
# candidates, the codes attention's new epilogue) against main (runner_old), the flagship keys, tactics timed:
#   run-{old,new}-N  fp16 and int8-fp16 b16/b64, quantize blocks:0-5, alternating, two rounds
# (part tk before it, same binary, checks the models with these candidates: graph = eager)
# Prediction: int8-fp16 b16 -2 to -3 us a block from attention-out and FFN-out (tactics' own times: 9.2 -> 8.8,
# 18.5 -> 16.8 us on this H100's check) = -15 us (1.13x -> ~1.17x fp16); b64 unchanged.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-230}
W=/tmp/s17flag; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/flag.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt ratios.md; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         for r in $W/run-*; do [ -f $r/summary.csv ] && cp $r/summary.csv "$FINAL/summary-$(basename $r).csv"; done; true; }
trap pack EXIT
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s14/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner & unpack runner_old & wait
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]' --set 'matrix.precision=["fp16","int8-fp16"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
for i in 1 2; do for v in old new; do
  if [ "$(left)" -lt 47 ]; then echo "skipped $v-$i: $(left) s left" >>$W/steps.txt; continue; fi
  B=/tmp/s14/runner; [ $v = old ] && B=/tmp/s14/runner_old
  echo "== $(date -u +%T) run-$v-$i" >>$W/steps.txt
  timeout --foreground -k 3 -s INT 45 $B experiments/quantization_sweep.toml "${P[@]}" --out $W/run-$v-$i >$W/run-$v-$i.log 2>&1
  echo "run-$v-$i exit $?" >>$W/steps.txt; pack
done; done
timeout 10 python3 benchmarks/cutlass_ratios.py $W >$W/ratios.md 2>&1
grep -A14 "^Runner cells" $W/ratios.md | cut -d'|' -f2-9
