#!/usr/bin/env bash
# s6 int8 part 2 (200 s): the flagship subset (DistilBERT random weights, seq 128, quantize
# blocks:0-5, CUTLASS, fused embeddings) with the FFN-in GELU epilogue standard against lean
# (device.gelu_epilogue), alternating with PyTorch in the same call:
#   std-1  : fp16, int8-fp16 (static FFN steps) at b16/b64, gelu_epilogue standard
#   lean-1 : the same with gelu_epilogue = "lean"
#   PyTorch: reduce-overhead fp16 and its W8A8 int8-fp16 (benchmarks/pytorch_reference.py)
#   dyn    : fp8-fp16 and int8-fp16 with dynamic FFN scales, lean, b16/b64
#   lean-2 : fp16, int8-fp16 static, lean, b64 only
#   std-2  : the same, standard (if time is left)
# Every step under `timeout`; results packed after each (a cut call returns what finished).
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
W=/tmp/int8run; rm -rf $W; mkdir -p $W "$FINAL" /tmp/int8bin
pack() { tar -C $W -czf "$FINAL/int8run.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt torch.jsonl; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] && cp "$r/summary.csv" "$FINAL/$(basename "$r").csv"; done; }
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
   --set device.gemm_library=cutlass --set device.fused_embeddings=true)
# run NAME LIMIT_S ARGS...: skipped when fewer than LIMIT_S + 4 s of the first 196 are left.
run() { local name=$1 limit=$2; shift 2
  local left=$(( 196 - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 4 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  step "runner $name"
  timeout -k 3 -s INT $limit /tmp/int8bin/runner experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
B2='matrix.batch_size=[16,64]'
run std-1 40 --set "$B2" --set 'matrix.precision=["fp16","int8-fp16"]' --set device.ffn_activation_scales=static
run lean-1 40 --set "$B2" --set 'matrix.precision=["fp16","int8-fp16"]' --set device.ffn_activation_scales=static --set device.gelu_epilogue=lean
step PyTorch
timeout -k 3 48 python3 benchmarks/pytorch_reference.py $W/torch.jsonl --batch-sizes 16,64 --precisions "" \
  --compile-precisions fp16 --w8a8-precisions int8-fp16 --compile-modes reduce-overhead --window-s 0.8 >$W/torch.log 2>&1
echo "torch exit $?" >>$W/steps.txt
run dyn 30 --set "$B2" --set 'matrix.precision=["fp8-fp16","int8-fp16"]' --set device.gelu_epilogue=lean
run lean-2 20 --set 'matrix.batch_size=[64]' --set 'matrix.precision=["fp16","int8-fp16"]' --set device.ffn_activation_scales=static --set device.gelu_epilogue=lean
run std-2 20 --set 'matrix.batch_size=[64]' --set 'matrix.precision=["fp16","int8-fp16"]' --set device.ffn_activation_scales=static
step done
