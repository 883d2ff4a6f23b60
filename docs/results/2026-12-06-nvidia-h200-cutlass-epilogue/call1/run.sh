#!/usr/bin/env bash
# s9 int8 call-1 part "int8-prof" (limit 180 s; main's runner from .s9/bin/runner.xz):
#   A. ncu, full sections, on the ping-pong FFN-in kernel that writes int8 codes (demangled name
#      matches Pingpong.*GeluTanhFit: only i8_codes_gelu_pp128tanh, the flagship's timed pick;
#      nothing of the load matches), launched at 8192 rows by the b64 cell's tactic timing:
#      SpeedOfLight, WarpStateStats, InstructionStats, ComputeWorkloadAnalysis, SchedulerStats,
#      MemoryWorkloadAnalysis, LaunchStats, Occupancy, SourceCounters (+ the SASS with stall samples).
#   B. ncu, duration + a few counters only, every per-block kernel of the same cell with the rule's
#      tactics (regex on CUTLASS device_kernel / attention / layer_norm / row scales / quantize:
#      the load's casts and copies cannot match), real clocks, no cache flush.
#   C. PyTorch's W8A8 fp8 (torch._scaled_mm row-wise, torch.compile reduce-overhead) at b16/b64.
#   D. the runner's flagship int8-fp16 / fp8-fp16 / fp16 cells at b16/b64 (no ncu), same call.
#   E. PyTorch's W8A8 int8 again, if time is left.
# Every step under `timeout`, skipped when its limit no longer fits; results packed after each.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
R=$(pwd)
T0=$(date +%s)
LIM=${LIMIT_S:-180}
W=/tmp/int8prof9; rm -rf $W; mkdir -p $W "$FINAL" /tmp/int8pbin
BIN=/tmp/int8pbin/runner
pack() { tar -C $W -czf "$FINAL/int8prof.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces \
           --exclude='*.ncu-rep' . 2>/dev/null
         # The reports themselves, if small enough to come back (< 15 MiB).
         for f in $W/*.ncu-rep; do [ -f "$f" ] || continue
           [ $(stat -c %s "$f") -lt 15000000 ] && cp "$f" "$FINAL/" 2>/dev/null; done
         for f in steps.txt torch.jsonl; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done; true; }
trap pack EXIT
left() { echo $(( LIM - ($(date +%s) - T0) )); }
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
# fits LIMIT: true when LIMIT + 2 s fit in what is left, else logs the skip.
fits() { local l; l=$(left); if [ $l -lt $(( $1 + 2 )) ]; then echo "skipped $2: $l s left" >>$W/steps.txt; return 1; fi; }

nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt
cat .s9/bin/BUILT >>$W/steps.txt 2>/dev/null
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none} $(${NCU:-false} --version 2>/dev/null | tail -1)" >>$W/steps.txt
# Without ncu, A and B cannot run: their limits are then never met.
[ -n "$NCU" ] || { echo "no ncu: A and B skipped" >>$W/steps.txt; NONCU=1; }
timeout 40 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    .s9/bin/runner.xz $BIN && chmod +x $BIN
timeout 10 $BIN --version >>$W/steps.txt 2>&1
# The flagship subset (session 8's int8-run): quantize blocks:0-5, CUTLASS, fused embeddings, lean
# GELU, skip attention, static attention codes, static FFN steps.
P=(--set 'matrix.quantize=["blocks:0-5"]'
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static)
# Short protocol for the ncu runs (the numbers of interest come from ncu, not the windows).
SHORT=(--set protocol.warmup_s=0.3 --set protocol.warmup_max_s=5 --set protocol.min_window_s=0.3 --set protocol.repeats=1
       --set protocol.idle_baseline_s=0.3 --set protocol.idle_settle_s=0.1 --set protocol.stabilize_s=0.1)
CELL=(--set 'matrix.precision=["int8-fp16"]' --set 'matrix.batch_size=[64]')

# A. the codes kernel, full sections.
# (The first runner of a fresh machine may spend ~27 s JIT-compiling candle's PTX: A's limit holds it.)
if [ -z "${NONCU:-}" ] && fits 75 "A (ncu codes kernel)"; then
  step "A: ncu full sections on the codes FFN-in kernel (int8-fp16 b64, tactics timed)"
  timeout -k 5 -s INT 75 $NCU --graph-profiling node --kernel-name-base demangled --kernel-name 'regex:Pingpong.*GeluTanhFit' --launch-count 3 \
    --clock-control none \
    --section SpeedOfLight --section WarpStateStats --section InstructionStats --section ComputeWorkloadAnalysis \
    --section SchedulerStats --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    --section LaunchStats --section Occupancy \
    --section SourceCounters --import-source no -f -o $W/codes \
    $BIN experiments/quantization_sweep.toml "${P[@]}" "${SHORT[@]}" "${CELL[@]}" --set device.gemm_tactics=timed \
    --out $W/run-A >$W/A.log 2>&1
  echo "A exit $?" >>$W/steps.txt
  if [ -f $W/codes.ncu-rep ]; then
    timeout 20 $NCU -i $W/codes.ncu-rep --page details --print-units base >$W/codes-details.txt 2>&1
    timeout 20 $NCU -i $W/codes.ncu-rep --page raw --csv --print-units base >$W/codes-raw.csv 2>&1
    timeout 30 $NCU -i $W/codes.ncu-rep --page source --csv --print-source sass >$W/codes-sass.csv 2>&1
    echo "A exports done" >>$W/steps.txt
  elif fits 45 "A2 (ncu codes kernel, fewer sections)"; then
    step "A2: no report from A; again with three sections"
    timeout -k 5 -s INT 45 $NCU --kernel-name-base demangled --kernel-name 'regex:Pingpong.*GeluTanhFit' --launch-count 2 \
      --clock-control none --section SpeedOfLight --section WarpStateStats --section SourceCounters \
      --import-source no -f -o $W/codes \
      $BIN experiments/quantization_sweep.toml "${P[@]}" "${SHORT[@]}" "${CELL[@]}" --set device.gemm_tactics=timed \
      --out $W/run-A2 >$W/A2.log 2>&1
    echo "A2 exit $?" >>$W/steps.txt
    [ -f $W/codes.ncu-rep ] && timeout 20 $NCU -i $W/codes.ncu-rep --page details --print-units base >$W/codes-details.txt 2>&1
    [ -f $W/codes.ncu-rep ] && timeout 30 $NCU -i $W/codes.ncu-rep --page source --csv --print-source sass >$W/codes-sass.csv 2>&1
  fi
fi

# B. every per-block kernel of the same cell (rule's tactics: no timing launches), duration and counters.
# The metrics this ncu knows, of those wanted (an unknown name would fail the whole pass).
M=gpu__time_duration.sum
if [ -z "${NONCU:-}" ]; then
  timeout 20 $NCU --query-metrics --chip gh100 >$W/query.txt 2>&1
  for m in dram__bytes_read.sum dram__bytes_write.sum smsp__inst_executed.sum lts__t_bytes.sum \
           sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed; do
    grep -qw "^${m%%.*}" $W/query.txt && M="$M,$m"
  done
  echo "B metrics: $M" >>$W/steps.txt
fi
if [ -z "${NONCU:-}" ] && fits 35 "B (ncu timeline)"; then
  step "B: ncu timeline of the int8-fp16 b64 cell's kernels (tactics rule)"
  timeout -k 5 -s INT 35 $NCU --graph-profiling node --kernel-name regex:'device_kernel|(attention|layer_norm|quantize|gelu).*_f16$|static_row_scales' \
    --launch-count 110 --clock-control none --cache-control none --metrics "$M" \
    --csv --print-units base --log-file $W/timeline.csv \
    $BIN experiments/quantization_sweep.toml "${P[@]}" "${SHORT[@]}" "${CELL[@]}" \
    --out $W/run-B >$W/B.log 2>&1
  echo "B exit $?" >>$W/steps.txt
fi

# C. PyTorch's fp8 W8A8.
if fits 40 "C (PyTorch fp8 W8A8)"; then
  l=$(( $(left) - 35 )); [ $l -gt 60 ] && l=60; [ $l -lt 40 ] && l=40
  step "C: PyTorch W8A8 fp8-fp16 reduce-overhead b16/b64 (limit $l s)"
  timeout -k 3 $l python3 benchmarks/pytorch_reference.py $W/torch.jsonl --batch-sizes 16,64 --precisions "" \
    --w8a8-precisions fp8-fp16 --compile-modes reduce-overhead --window-s 0.8 >$W/torch.log 2>&1
  echo "torch fp8 exit $?" >>$W/steps.txt
fi

# D. the runner's cells, same call (flagship protocol of session 8).
if fits 30 "D (runner cells)"; then
  l=$(( $(left) - 2 )); [ $l -gt 50 ] && l=50
  step "D: runner fp16 / int8-fp16 / fp8-fp16 b16,b64 tactics timed (limit $l s)"
  timeout -k 3 -s INT $l $BIN experiments/quantization_sweep.toml "${P[@]}" --set device.gemm_tactics=timed \
    --set 'matrix.precision=["fp16","int8-fp16","fp8-fp16"]' --set 'matrix.batch_size=[16,64]' \
    --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3 \
    --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5 \
    --out $W/run-D >$W/D.log 2>&1
  echo "D exit $?" >>$W/steps.txt
fi

# E. PyTorch's int8 W8A8 (session 8 measured it; again in this call if time is left).
if fits 30 "E (PyTorch int8 W8A8)"; then
  l=$(( $(left) - 2 )); [ $l -gt 80 ] && l=80
  step "E: PyTorch W8A8 int8-fp16 reduce-overhead b16/b64 (limit $l s)"
  timeout -k 3 $l python3 benchmarks/pytorch_reference.py $W/torch-int8.jsonl --batch-sizes 64,16 --precisions "" \
    --w8a8-precisions int8-fp16 --compile-modes reduce-overhead --window-s 0.8 >$W/torch-int8.log 2>&1
  echo "torch int8 exit $?" >>$W/steps.txt
  cat $W/torch-int8.jsonl >>$W/torch.jsonl 2>/dev/null
fi
step done
