#!/usr/bin/env bash
# s8 int8 call-1 part "int8-prof" (240 s): measure before changing anything (issue 31).
#  1. the runner's flagship subset (DistilBERT random weights, seq 128, the Rotten Tomatoes sentences,
#     quantize blocks:0-5, CUTLASS, fused embeddings, lean GELU, attention_padding = skip,
#     attention_activation_scales = static): fp16 + int8-fp16 (static FFN steps) at b16/b64, then
#     fp8-fp16 (dynamic FFN scales) at b16/b64;
#  2. ncu, per kernel, of the int8-fp16 static b64 forward as the runner runs it (one runner cell
#     under ncu: the first 600 launches whose names match the 16-bit/8-bit forward's kernels:
#     `_f16` suffixes, CUTLASS's device_kernel, cuBLAS's half nvjet, static_row_scales; graph
#     nodes profiled one by one); the metrics named in metrics.txt (those this ncu knows);
#  3. PyTorch's own W8A8 (benchmarks/pytorch_w8a8.py: torch._int_mm, per-token dynamic scales,
#     torch.compile reduce-overhead = CUDA graphs), int8-fp16 at b64 then b16 (a fresh compile each);
#  4. if >= 40 s remain: the same ncu pass at b16; then, if >= 75 s remain, W8A8 fp8-fp16 b64.
# Every step under `timeout`, skipped when its limit no longer fits; results packed after each.
set -uo pipefail
FINAL=${1:?usage: go.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
LIMIT=${LIMIT_S:-235}
W=/tmp/int8prof; rm -rf $W; mkdir -p $W "$FINAL" /tmp/int8pbin
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
pack() { tar -C $W -czf "$FINAL/int8prof.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         cat $W/w8a8-*.jsonl >$W/w8a8.jsonl 2>/dev/null
         for f in steps.txt w8a8.jsonl metrics.txt; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         first=1; : >"$FINAL/summaries.csv"
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] || continue; s=$(basename "$r"); s=${s#run-}
           if [ $first = 1 ]; then sed -n '1s/^/step,/p' "$r/summary.csv" >>"$FINAL/summaries.csv"; first=0; fi
           sed -n "2,\$s/^/$s,/p" "$r/summary.csv" >>"$FINAL/summaries.csv"; done
         for c in $W/ncu-*.csv; do [ -f "$c" ] && gzip -c "$c" >"$FINAL/$(basename "$c").gz"; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s, $(left) s left) $*" | tee -a $W/steps.txt; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt
BIN=.s8/bin/runner.xz; [ -f "$D/runner.xz" ] && BIN="$D/runner.xz"
timeout 30 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$BIN" /tmp/int8pbin/runner && chmod +x /tmp/int8pbin/runner
echo "binary $BIN" >>$W/steps.txt
timeout 10 /tmp/int8pbin/runner --version >>$W/steps.txt 2>&1
R=/tmp/int8pbin/runner
P=(--set 'matrix.quantize=["blocks:0-5"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static)
INT8=(--set 'matrix.precision=["fp16","int8-fp16"]' --set device.ffn_activation_scales=static)
FP8=(--set 'matrix.precision=["fp8-fp16"]')
# run NAME LIMIT ARGS...: the runner on the flagship file; skipped when LIMIT + 2 s no longer fit.
run() { local name=$1 limit=$2; shift 2
  if [ "$(left)" -lt $(( limit + 2 )) ]; then echo "skipped $name: $(left) s left" >>$W/steps.txt; return; fi
  step "runner $name"
  timeout -k 3 -s INT $limit $R experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
run int8 34 --set 'matrix.batch_size=[16,64]' "${INT8[@]}"
run fp8 22 --set 'matrix.batch_size=[16,64]' "${FP8[@]}"

NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none} $($NCU --version 2>/dev/null | tail -1)" >>$W/steps.txt
# The metrics this ncu knows, of those wanted (an unknown name would fail the whole pass).
M=gpu__time_duration.sum
if [ -n "$NCU" ]; then
  timeout 20 "$NCU" --query-metrics --chip gh100 >$W/query.txt 2>&1
  for m in dram__bytes_read.sum dram__bytes_write.sum sm__throughput.avg.pct_of_peak_sustained_elapsed \
           gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed \
           sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed \
           sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed \
           sm__warps_active.avg.pct_of_peak_sustained_active launch__grid_size launch__registers_per_thread; do
    grep -qw "^${m%%.*}" $W/query.txt && M="$M,$m"
  done
fi
echo "$M" >$W/metrics.txt
# ncu_run BATCH LIMIT: one int8-fp16 static cell under ncu.
ncu_run() { local b=$1 limit=$2
  if [ -z "$NCU" ]; then echo "no ncu" >>$W/steps.txt; return; fi
  if [ "$(left)" -lt $(( limit + 2 )) ]; then echo "skipped ncu b$b: $(left) s left" >>$W/steps.txt; return; fi
  step "ncu int8-fp16 static b$b"
  timeout -k 3 $limit "$NCU" --graph-profiling node --kernel-name-base demangled \
      --kernel-name 'regex:_f16|device_kernel|nvjet_h|static_row_scales' --launch-count 600 \
      --metrics "$M" --csv --print-units base --clock-control none --cache-control none \
      --log-file $W/ncu-b$b.csv \
      $R experiments/quantization_sweep.toml "${P[@]}" --set 'matrix.precision=["int8-fp16"]' \
      --set device.ffn_activation_scales=static --set "matrix.batch_size=[$b]" \
      --set protocol.warmup_s=0.3 --set protocol.warmup_max_s=5 --set protocol.repeats=1 \
      --out $W/run-ncu-b$b >$W/ncu-b$b.log 2>&1
  echo "ncu b$b exit $?" >>$W/steps.txt; }
ncu_run 64 45

# w8a8 PRECISION BATCHES LIMIT
w8a8() { local p=$1 bs=$2 limit=$3
  if [ "$(left)" -lt $(( limit + 2 )) ]; then limit=$(( $(left) - 2 )); fi
  if [ "$limit" -lt 30 ]; then echo "skipped W8A8 $p $bs: $(left) s left" >>$W/steps.txt; return; fi
  step "PyTorch W8A8 $p b$bs (limit $limit s)"
  timeout -k 3 $limit python3 benchmarks/pytorch_reference.py $W/w8a8-$p.jsonl --batch-sizes $bs \
    --precisions "" --compile-precisions "" --w8a8-precisions $p --compile-modes reduce-overhead \
    --window-s 0.8 >$W/w8a8-$p.log 2>&1
  echo "W8A8 $p exit $?" >>$W/steps.txt; }
# W8A8 int8 gets what is left; the b16 profile runs only if 38 s remain after it.
w8a8 int8-fp16 64,16 $(( $(left) - 2 ))
ncu_run 16 36
[ "$(left)" -ge 75 ] && w8a8 fp8-fp16 64 $(( $(left) - 2 ))
step done
