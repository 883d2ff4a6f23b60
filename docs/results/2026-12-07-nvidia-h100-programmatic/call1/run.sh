#!/usr/bin/env bash
# Part pdl (session 18; limit ~560 s): branch s18's binaries (runner18, cutlass_check18: device.programmatic_launch =
# the captured chain's edges rewritten so that kernels which wait first get programmatic edges; CUTLASS built with grid
# dependency control; the runner's kernels call pdl_enter first; 128x96 int8 kernel a tactic candidate):
#   1. cutlass_check --programmatic: the models' graph = eager with the edges (bit-equal, edges given), then the
#      flagship int8-fp16 / fp16 forward's replay time off / on, alternating                            (~120 s)
#   2. cutlass_check --tactics: 128x96 among the candidates, the models with tactics timed graph = eager    (~70 s)
#   3. the flagship keys, fp16 and int8-fp16 b16/b64, blocks:0-5, tactics timed: programmatic_launch off / on
#      alternating, two rounds (run-off-N, run-on-N)                                                         (~4 x 47 s)
# Prediction: ~1 us hidden per kernel boundary: int8 b16 (~50 kernels) -40 to -50 us (0.46 -> ~0.42 ms on an H100);
# fp16 less (its cuBLASLt GEMMs keep their captured edges).
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-560}
W=/tmp/s18pdl; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/pdl.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt ratios.txt programmatic.txt tactics.txt; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         for r in $W/run-*; do [ -f $r/summary.csv ] && cp $r/summary.csv "$FINAL/summary-$(basename $r).csv"; done; true; }
trap pack EXIT
left() { echo $(( LIM - ($(date +%s) - T0) )); }
{ nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv; date -u; cat .s14/bin/BUILT; } >$W/steps.txt 2>&1
unpack runner18 & unpack cutlass_check18 & wait
echo "== $(date -u +%T) programmatic" >>$W/steps.txt
timeout -s KILL 150 /tmp/s14/cutlass_check18 --programmatic >$W/programmatic.txt 2>&1
echo "programmatic exit $?; FAILED lines: $(grep -c FAILED $W/programmatic.txt)" >>$W/steps.txt; pack
grep -E "programmatic|failure" $W/programmatic.txt | cut -c1-260 | tail -12
echo "== $(date -u +%T) tactics" >>$W/steps.txt
timeout -s KILL 80 /tmp/s14/cutlass_check18 --tactics >$W/tactics.txt 2>&1
echo "tactics exit $?; FAILED lines: $(grep -c FAILED $W/tactics.txt)" >>$W/steps.txt; pack
grep -E "x96c1.*fastest|FAILED|failure" $W/tactics.txt | cut -c1-140 | tail -8
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]' --set 'matrix.precision=["fp16","int8-fp16"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
for i in 1 2; do for v in off on; do
  if [ "$(left)" -lt 48 ]; then echo "skipped $v-$i: $(left) s left" >>$W/steps.txt; continue; fi
  X=(); [ $v = on ] && X=(--set device.programmatic_launch=true)
  echo "== $(date -u +%T) run-$v-$i" >>$W/steps.txt
  timeout --foreground -k 3 -s INT 46 /tmp/s14/runner18 experiments/quantization_sweep.toml "${P[@]}" "${X[@]}" --out $W/run-$v-$i >$W/run-$v-$i.log 2>&1
  echo "run-$v-$i exit $?" >>$W/steps.txt; pack
done; done
timeout 10 python3 .s14/pdl/ratios.py $W >$W/ratios.txt 2>&1
cat $W/ratios.txt
