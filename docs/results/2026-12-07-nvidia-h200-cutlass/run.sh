#!/usr/bin/env bash
# Session 16, part flag31 (limit ~540 s): issue 31's flagship subset on this card (meant for an H200), in one call,
# alternating with PyTorch; binary: .s14/bin/BUILT (main + the fast-accumulation codes kernels promoted):
#   cutlass_check --half2   every codes kernel against the standard one, the f16 range, static FFN vs CPU, NaN rows,
#                           graph replay = eager (int8, fp8 promoted, fp8 fast accumulation)
#   run-cutlass-N           fp16, int8-fp16, fp8-fp16 at b16/b64, quantize all and blocks:0-5, the flagship keys (CUTLASS,
#                           fused embeddings, lean GELU, attention_padding = skip, static attention codes, static FFN
#                           steps, gemm_tactics = timed)
#   run-cutlassfast-N           fp16 and fp8-fp16 the same, device.fp8_fast_accumulation = true
#   torch-1.jsonl           PyTorch: torch.compile reduce-overhead fp16, its own W8A8 (int8 torch._int_mm, fp8
#                           torch._scaled_mm), b16/b64 (benchmarks/pytorch_reference.py), between the two rounds
#   ratios.md               benchmarks/cutlass_ratios.py over all runs and PyTorch
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-540}
W=/tmp/s16-flag; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/flag31.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt ratios.md cutlass_check_half2.txt torch-1.jsonl; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         for r in $W/run-*; do [ -f $r/summary.csv ] && cp $r/summary.csv "$FINAL/summary-$(basename $r).csv"; done; true; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s14/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner & unpack cutlass_check & wait
R=/tmp/s14/runner
step "cutlass_check --half2 (timeout 150 s)"
timeout -s KILL 150 /tmp/s14/cutlass_check --half2 >$W/cutlass_check_half2.txt 2>&1
echo "cutlass_check exit $?; FAILED lines: $(grep -c FAILED $W/cutlass_check_half2.txt)" >>$W/steps.txt
P=(--set 'matrix.batch_size=[16,64]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
run() { local name=$1 limit=$2 reserve=$3; shift 3
  if [ "$(left)" -lt $(( limit + reserve )) ]; then echo "skipped $name: $(left) s left" >>$W/steps.txt; return; fi
  step "runner $name (timeout $limit s)"
  timeout --foreground -k 3 -s INT $limit $R experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
ALL=(--set 'matrix.precision=["fp16","int8-fp16","fp8-fp16"]' --set 'matrix.quantize=["all","blocks:0-5"]')
FAST=(--set 'matrix.precision=["fp16","fp8-fp16"]' --set 'matrix.quantize=["blocks:0-5"]' --set device.fp8_fast_accumulation=true)
run cutlass-1 95 150 "${ALL[@]}"
run cutlassfast-1 45 150 "${FAST[@]}"
T=$(( $(left) - 110 )); [ $T -gt 110 ] && T=110
if [ $T -ge 40 ]; then
  step "PyTorch (timeout $T s)"
  timeout -k 3 $T python3 benchmarks/pytorch_reference.py $W/torch-1.jsonl --batch-sizes 16,64 --precisions "" \
    --compile-precisions fp16 --w8a8-precisions int8-fp16,fp8-fp16 --compile-modes reduce-overhead --window-s 0.8 \
    >$W/torch.log 2>&1
  echo "torch exit $?" >>$W/steps.txt
else echo "skipped PyTorch: $(left) s left" >>$W/steps.txt; fi
run cutlass-2 95 50 "${ALL[@]}"
run cutlassfast-2 45 3 "${FAST[@]}"
step ratios
timeout 10 python3 benchmarks/cutlass_ratios.py $W >$W/ratios.md 2>&1
step done
tail -30 $W/ratios.md
