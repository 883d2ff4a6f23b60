#!/usr/bin/env bash
# Part sk (session 17; limit ~540 s): two unchecked changes on branch s15 55bbaea, checked, then measured:
#   cutlass_check --tactics  (new binary) every int8 -> f16 tactic candidate, the new stream-K one (i8_f16_co128sk,
#                            workspace per stream) among them, against the CPU and bit-equal to the rule's kernel at
#                            the flagship's, BERT-large's and the decoders' shapes, timed; NaN rows; the models with
#                            tactics timed, graph = eager (a stream-K pick inside a captured graph)
#   cutlass_check --padding  (new binary) the codes attention's new epilogue (round-down adds, pair rounding):
#                            every code against the CPU's quantization of the plain kernel's context, NaN rows,
#                            graph = eager, codes us against plain us
#   run-{old,attn,new}-N     fp16 and int8-fp16 b16/b64, quantize blocks:0-5, flagship keys, tactics timed:
#                            runner_old (main), runner_attn (attention epilogue only), runner (both), alternating;
#                            attn only if --padding passed, new only if both passed
# Predictions (written before the run): stream-K FFN-out 2048 x 3072 -> 768 13.5 -> ~10 us, attention-out
# 8.0 -> ~7 us (tactics' own timing in the record); int8-fp16 b16 -25 us (1.13x -> ~1.2x fp16); the attention
# epilogue -15 to -20 us at b64 (1.52x -> ~1.55x), -5 us at b16.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-540}
W=/tmp/s17sk; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/sk.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt ratios.md cutlass_check_tactics.txt cutlass_check_padding.txt; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         for r in $W/run-*; do [ -f $r/summary.csv ] && cp $r/summary.csv "$FINAL/summary-$(basename $r).csv"; done; true; }
trap pack EXIT
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s14/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner & unpack runner_old & unpack runner_attn & unpack cutlass_check & wait
echo "== $(date -u +%T) cutlass_check --tactics (timeout 170 s)" >>$W/steps.txt
timeout -s KILL 170 /tmp/s14/cutlass_check --tactics >$W/cutlass_check_tactics.txt 2>&1; SK=$?
echo "tactics exit $SK; FAILED lines: $(grep -c FAILED $W/cutlass_check_tactics.txt)" >>$W/steps.txt
echo "== $(date -u +%T) cutlass_check --padding (timeout 100 s)" >>$W/steps.txt
timeout -s KILL 100 /tmp/s14/cutlass_check --padding >$W/cutlass_check_padding.txt 2>&1; PAD=$?
echo "padding exit $PAD; FAILED lines: $(grep -c FAILED $W/cutlass_check_padding.txt)" >>$W/steps.txt
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]' --set 'matrix.precision=["fp16","int8-fp16"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
V=(old)
[ $PAD -eq 0 ] && V+=(attn)
[ $PAD -eq 0 ] && [ $SK -eq 0 ] && V+=(new)
echo "variants: ${V[*]}" >>$W/steps.txt
for i in 1 2; do for v in "${V[@]}"; do
  if [ "$(left)" -lt 47 ]; then echo "skipped $v-$i: $(left) s left" >>$W/steps.txt; continue; fi
  B=/tmp/s14/runner; [ $v = old ] && B=/tmp/s14/runner_old; [ $v = attn ] && B=/tmp/s14/runner_attn
  echo "== $(date -u +%T) run-$v-$i" >>$W/steps.txt
  timeout --foreground -k 3 -s INT 45 $B experiments/quantization_sweep.toml "${P[@]}" --out $W/run-$v-$i >$W/run-$v-$i.log 2>&1
  echo "run-$v-$i exit $?" >>$W/steps.txt
done; done
timeout 10 python3 benchmarks/cutlass_ratios.py $W >$W/ratios.md 2>&1
grep -E "co128sk|fastest here|FAILED" $W/cutlass_check_tactics.txt | head -24
grep -E "codes|FAILED" $W/cutlass_check_padding.txt | head -12
cat $W/ratios.md 2>/dev/null | head -20
