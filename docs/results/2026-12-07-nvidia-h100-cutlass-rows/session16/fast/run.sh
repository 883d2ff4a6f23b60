#!/usr/bin/env bash
# Part fast (limit ~300 s; written in session 15 for the next call): the E4M3 codes kernels with FP8 fast
# accumulation (e4m3_codes_f16_gelu_co128fast, pp128fasth2), checked, then what fast accumulation buys fp8-fp16
# with the flagship keys:
#   cutlass_check --half2   (every check of the part s15, plus the fast kind's codes against the promoted standard
#                           kernel and fp8-fp16 fast static's graph replay with each forced)
#   run-off-N / run-on-N    (only if the check passed) fp16 and fp8-fp16 at b16/b64, quantize blocks:0-5, the
#                           flagship keys (static FFN scales), tactics timed; device.fp8_fast_accumulation false /
#                           true, alternating off, on, off, on; binary: a build with the two kernels promoted
#                           (branch s15-fast-measure), .s14/bin/BUILT says which
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-300}
W=/tmp/s15fast; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/fast.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt ratios.md cutlass_check_half2.txt; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         for r in $W/run-*; do [ -f $r/summary.csv ] && cp $r/summary.csv "$FINAL/summary-$(basename $r).csv"; done; true; }
trap pack EXIT
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s14/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner & unpack cutlass_check & wait
echo "== $(date -u +%T) cutlass_check --half2 (timeout 150 s)" >>$W/steps.txt
timeout -s KILL 150 /tmp/s14/cutlass_check --half2 >$W/cutlass_check_half2.txt 2>&1; CHECK=$?
echo "cutlass_check exit $CHECK; FAILED lines: $(grep -c FAILED $W/cutlass_check_half2.txt)" >>$W/steps.txt
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]' --set 'matrix.precision=["fp16","fp8-fp16"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
if [ $CHECK -eq 0 ] || [ $CHECK -eq 137 ]; then
  for i in 1 2; do for fa in off on; do
    if [ "$(left)" -lt 45 ]; then echo "skipped $fa-$i: $(left) s left" >>$W/steps.txt; continue; fi
    echo "== $(date -u +%T) run-$fa-$i" >>$W/steps.txt
    timeout --foreground -k 3 -s INT 45 /tmp/s14/runner experiments/quantization_sweep.toml "${P[@]}" \
      --set device.fp8_fast_accumulation=$([ $fa = on ] && echo true || echo false) --out $W/run-$fa-$i >$W/run-$fa-$i.log 2>&1
    echo "run-$fa-$i exit $?" >>$W/steps.txt
  done; done
  timeout 10 python3 benchmarks/cutlass_ratios.py $W >$W/ratios.md 2>&1
else echo "check failed: no runs" >>$W/steps.txt; fi
cat $W/ratios.md 2>/dev/null | head -14
