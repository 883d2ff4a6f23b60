#!/usr/bin/env bash
# Part prof (session 16, limit ~230 s): where each forward's time goes now, per kernel, on this card:
# ncu timelines (real clocks, no cache flush, each kernel alone, graph nodes) of fp16 / int8-fp16 /
# fp8-fp16 at b64 and fp16 / int8-fp16 at b16, the flagship keys (static FFN, tactics by rule).
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-260}
W=/tmp/s16prof; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/prof.tar.gz" --exclude='run-*' . 2>/dev/null; cp $W/steps.txt "$FINAL/" 2>/dev/null; true; }
trap pack EXIT
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s14/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none}" >>$W/steps.txt
[ -n "$NCU" ] || exit 0
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum
P=(--set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static
   --set protocol.warmup_s=0.3 --set protocol.warmup_max_s=5 --set protocol.min_window_s=0.3 --set protocol.repeats=1
   --set protocol.idle_baseline_s=0.3 --set protocol.idle_settle_s=0.1 --set protocol.stabilize_s=0.1)
for cell in fp16:64 int8-fp16:64 fp8f:64 int8-fp16:16 fp16:16; do
  p=${cell%%:*}; b=${cell##*:}; F=()
  [ $p = fp8f ] && { p=fp8-fp16; F=(--set device.fp8_fast_accumulation=true); }
  [ "$(left)" -lt 30 ] && { echo "skipped $cell: $(left) s left" >>$W/steps.txt; continue; }
  l=$(( $(left) - 2 )); [ $l -gt 60 ] && l=60
  echo "== $(date -u +%T) ncu timeline $cell (timeout $l s)" >>$W/steps.txt
  Q=(); [ $p != fp16 ] && Q=(--set 'matrix.quantize=["blocks:0-5"]')
  timeout -k 5 -s INT $l $NCU --graph-profiling node --launch-count 200 --clock-control none --cache-control none \
    --kernel-name regex:'device_kernel|attention|(layer_norm|quantize|embed|gelu|softmax)[a-z0-9_]*_f16$|static_row' \
    --metrics $M --csv --print-units base --log-file $W/timeline-$p-b$b.csv \
    /tmp/s14/runner experiments/quantization_sweep.toml "${P[@]}" "${Q[@]}" "${F[@]}" --set "matrix.precision=[\"$p\"]" \
    --set "matrix.batch_size=[$b]" --out $W/run-$p-$b >$W/ncu-$p-$b.log 2>&1
  echo "$cell exit $?" >>$W/steps.txt
done
