#!/usr/bin/env bash
# Session 15, part s15 (limit ~560 s): the f16-pairs codes kernels, checked, then measured against main's binary:
#   cutlass_check --half2   int8 (i8_codes_gelu_pp128h2, session 14) and E4M3 (e4m3_codes_f16_gelu_pp128x64h2 /
#                           pp64h2, session 15): every codes kernel of each format at 8192/2048 rows against the
#                           standard one, timed; int8's f16 range; the static FFN vs the CPU + NaN row and the
#                           model's graph = eager with each new kernel forced
#   run-new-N / run-old-N   (only if the check passed) fp16, int8-fp16, fp8-fp16 at b16/b64, quantize blocks:0-5,
#                           the flagship keys, gemm_tactics = timed; new = branch s15 with the new kernels promoted
#                           (.s14/bin/BUILT), old = main's kernels; alternating new, old, new, old
#   ncu-new-fp8             the E4M3 codes kernel at 8192 rows (fp8-fp16 b64): SpeedOfLight, WarpStateStats
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-560}
W=/tmp/s15; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/s15.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces --exclude='*.ncu-rep' . 2>/dev/null
         for f in steps.txt ratios.md cutlass_check_half2.txt ncu-new-fp8-details.txt; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         for r in $W/run-*; do [ -f $r/summary.csv ] && cp $r/summary.csv "$FINAL/summary-$(basename $r).csv"; done
         python3 - $W >"$FINAL/tactics.txt" 2>&1 <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/run-*/cells/*.json")):
    d = json.load(open(f)); c = d["cell"]; i = d.get("implementation") or {}
    print(f.split("/")[-3], c["precision"], c["batch_size"], "|", i.get("activation", "-"), "|", i.get("gemm_tactics", "(rule)"))
PY
         true; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s14/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner & unpack runner_old & unpack cutlass_check & wait
NEW=/tmp/s14/runner; OLD=/tmp/s14/runner_old
echo "new: $(timeout 10 $NEW --version 2>&1)" >>$W/steps.txt
echo "old: $(timeout 10 $OLD --version 2>&1)" >>$W/steps.txt
step "cutlass_check --half2 (timeout 230 s)"
timeout -s KILL 230 /tmp/s14/cutlass_check --half2 >$W/cutlass_check_half2.txt 2>&1; CHECK=$?
echo "cutlass_check exit $CHECK" >>$W/steps.txt; grep -c FAILED $W/cutlass_check_half2.txt >>$W/steps.txt; tail -n 2 $W/cutlass_check_half2.txt >>$W/steps.txt
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]'
   --set 'matrix.precision=["fp16","int8-fp16","fp8-fp16"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
run() { local bin=$1 name=$2 limit=$3 reserve=$4
  if [ "$(left)" -lt $(( limit + reserve )) ]; then echo "skipped $name: $(left) s left" >>$W/steps.txt; return; fi
  step "runner $name (timeout $limit s)"
  timeout --foreground -k 3 -s INT $limit $bin experiments/quantization_sweep.toml "${P[@]}" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
# A check cut by its timeout (137) still measures (its lines say what passed); a failed one (1) does not.
if [ $CHECK -eq 0 ] || [ $CHECK -eq 137 ]; then
  run $NEW new-1 60 70; run $OLD old-1 60 70; run $NEW new-2 60 5; run $OLD old-2 60 5
  step ratios
  timeout 10 python3 benchmarks/cutlass_ratios.py $W >$W/ratios.md 2>&1
else echo "check failed: no runs" >>$W/steps.txt; fi
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
SHORT=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.precision=["fp8-fp16"]' --set 'matrix.batch_size=[64]'
       --set protocol.warmup_s=0.3 --set protocol.warmup_max_s=5 --set protocol.min_window_s=0.3 --set protocol.repeats=1
       --set protocol.idle_baseline_s=0.3 --set protocol.idle_settle_s=0.1 --set protocol.stabilize_s=0.1
       --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
       --set device.attention_padding=skip --set device.attention_activation_scales=static
       --set device.ffn_activation_scales=static)
if [ -n "$NCU" ] && [ "$(left)" -gt 60 ] && { [ $CHECK -eq 0 ] || [ $CHECK -eq 137 ]; }; then
  l=$(( $(left) - 15 )); [ $l -gt 80 ] && l=80
  step "ncu new-fp8 (timeout $l s)"
  timeout -k 5 -s INT $l $NCU --graph-profiling node --kernel-name-base demangled --kernel-name 'regex:CodesE4m3Half2Op|Sm90RowVectors' --launch-count 2 \
    --clock-control none --section SpeedOfLight --section WarpStateStats --section SchedulerStats -f -o $W/ncu-new-fp8 \
    $NEW experiments/quantization_sweep.toml "${SHORT[@]}" --out $W/run-ncu-new-fp8 >$W/ncu-new-fp8.log 2>&1
  echo "ncu exit $?" >>$W/steps.txt
  [ -f $W/ncu-new-fp8.ncu-rep ] && timeout 20 $NCU -i $W/ncu-new-fp8.ncu-rep --page details --print-units base >$W/ncu-new-fp8-details.txt 2>&1
else echo "skipped ncu: $(left) s left, ncu '${NCU}', check $CHECK" >>$W/steps.txt; fi
step done
cat $W/ratios.md 2>/dev/null | tail -30
