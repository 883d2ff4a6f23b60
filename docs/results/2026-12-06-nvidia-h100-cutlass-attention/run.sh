#!/usr/bin/env bash
# s7 int8 part 2 (200 s): the flagship subset (DistilBERT random weights, seq 128, quantize
# blocks:0-5, CUTLASS, fused embeddings, lean GELU) with the new keys off and on (see READY),
# alternating with PyTorch in the same call:
#   off-1 / on-1  : fp16 and int8-fp16 (static FFN steps) at b16/b64
#   fp8-off/fp8-on: fp8-fp16 (dynamic FFN scales) at b16/b64
#   PyTorch       : reduce-overhead fp16 at b16/b64 (its W8A8 dropped: its compile alone outlasted
#                   48 s in session 6, and this call has no 70 s to spare)
#   on-2 / off-2  : fp16 and int8-fp16 static at b64
# Every step under `timeout`; results packed after each (a cut call returns what finished).
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
W=/tmp/int8run; rm -rf $W; mkdir -p $W "$FINAL" /tmp/int8bin
pack() { tar -C $W -czf "$FINAL/int8run.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt torch.jsonl; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         first=1; : >"$FINAL/summaries.csv"
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] || continue; s=$(basename "$r"); s=${s#run-}
           if [ $first = 1 ]; then sed -n '1s/^/step,/p' "$r/summary.csv" >>"$FINAL/summaries.csv"; first=0; fi
           sed -n "2,\$s/^/$s,/p" "$r/summary.csv" >>"$FINAL/summaries.csv"; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >$W/gpu.txt 2>&1
date -u >>$W/gpu.txt
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/runner.xz" /tmp/int8bin/runner && chmod +x /tmp/int8bin/runner
/tmp/int8bin/runner --version >>$W/gpu.txt 2>&1
cat $W/gpu.txt >$W/steps.txt
P=(--templates "$D/templates" --set 'matrix.quantize=["blocks:0-5"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean)
# The keys under test (on): see READY. attention_activation_scales changes the 8-bit cells only.
ON=(--set device.attention_padding=skip --set device.attention_activation_scales=static)
INT8=(--set 'matrix.precision=["fp16","int8-fp16"]' --set device.ffn_activation_scales=static)
FP8=(--set 'matrix.precision=["fp8-fp16"]')
# run NAME LIMIT_S ARGS...: skipped when fewer than LIMIT_S + 2 s of the first 197 are left.
run() { local name=$1 limit=$2; shift 2
  local left=$(( ${LIMIT_S:-197} - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 2 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  step "runner $name"
  timeout -k 3 -s INT $limit /tmp/int8bin/runner experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
B2='matrix.batch_size=[16,64]'
B64='matrix.batch_size=[64]'
run off-1 36 --set "$B2" "${INT8[@]}"
run on-1 36 --set "$B2" "${INT8[@]}" "${ON[@]}"
run fp8-on 24 --set "$B2" "${FP8[@]}" "${ON[@]}"
run fp8-off 24 --set "$B2" "${FP8[@]}"
step PyTorch
timeout -k 3 44 python3 benchmarks/pytorch_reference.py $W/torch.jsonl --batch-sizes 16,64 --precisions "" \
  --compile-precisions fp16 --w8a8-precisions "" --compile-modes reduce-overhead --window-s 0.8 >$W/torch.log 2>&1
echo "torch exit $?" >>$W/steps.txt
run on-2 20 --set "$B64" "${INT8[@]}" "${ON[@]}"
run off-2 20 --set "$B64" "${INT8[@]}"
step done
