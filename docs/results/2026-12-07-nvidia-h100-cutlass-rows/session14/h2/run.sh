#!/usr/bin/env bash
# Session 14, part h2 (limit ~560 s): i8_codes_gelu_pp128h2, FFN-in's int8 codes with the GELU in f16 pairs
# (gemm_rows.cuh's CodesHalf2Op, the lean rule's codes kernel on branch s14; pp128h2c1, its no-cluster form, a tactic candidate), checked, then measured against
# main's binary (i8_codes_gelu_pp128rows, the f32 epilogue) in one call:
#   cutlass_check --half2   codes within one step of the standard kernel at 8192/2048 rows (every codes kernel,
#                           timed), the f16 range (bias +-60000, weights x 400, steps x 1e-6 / x 1e4) against
#                           pp128rows, the static FFN against the CPU + NaN row, graph = eager, with h2 forced
#   sass-counts.txt         cuobjdump -sass of both objects: the instructions each kernel holds, by opcode
#   run-new-N / run-old-N   (only if the check passed) fp16 and int8-fp16 at b16/b64, quantize blocks:0-5, the
#                           flagship keys, gemm_tactics = timed; new (branch s14), old (main's 7f8e9df binary),
#                           alternating new, old, new, old; ratios.md by benchmarks/cutlass_ratios.py
#   ncu-new / ncu-old       the codes kernel of each binary at 8192 rows (int8-fp16 b64): SpeedOfLight,
#                           WarpStateStats, InstructionStats, SchedulerStats, SourceCounters; stalls by region
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-560}
W=/tmp/s14-h2; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/h2.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces --exclude='*.ncu-rep' \
           --exclude='*-sass.csv' . 2>/dev/null
         for f in steps.txt ratios.md cutlass_check_half2.txt sass-counts.txt ncu-new-details.txt ncu-old-details.txt \
                  ncu-new-stalls.txt ncu-old-stalls.txt; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
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
# 1. The check (the first process of a fresh machine also JIT-compiles candle's PTX).
step "cutlass_check --half2 (timeout 150 s)"
timeout -s KILL 150 /tmp/s14/cutlass_check --half2 >$W/cutlass_check_half2.txt 2>&1; CHECK=$?
echo "cutlass_check exit $CHECK" >>$W/steps.txt; tail -n 3 $W/cutlass_check_half2.txt >>$W/steps.txt
# 2. The instructions each kernel holds.
step "SASS counts"
CUOBJDUMP=$(command -v cuobjdump || ls /usr/local/cuda*/bin/cuobjdump 2>/dev/null | head -1)
for o in h2 rows; do timeout 30 $CUOBJDUMP -sass .s14/obj/$o.o >$W/$o.sass 2>&1; done
python3 - $W >$W/sass-counts.txt 2>&1 <<'PY'
import collections, re, sys
for o in ("h2", "rows"):
    ops = collections.Counter()
    for l in open(f"{sys.argv[1]}/{o}.sass"):
        m = re.match(r"\s+/\*[0-9a-f]{4}\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_]+)", l)
        if m: ops[m.group(2)] += 1
    keys = ["MUFU", "HFMA2", "HMUL2", "HADD2", "HMNMX2", "FFMA", "FMUL", "FADD", "FMNMX", "I2FP", "F2FP", "FRND", "F2I", "PRMT", "STS", "STSM", "LDG", "BAR"]
    print(o, "total", sum(ops.values()), " ".join(f"{k} {ops[k]}" for k in keys))
PY
cat $W/sass-counts.txt >>$W/steps.txt
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]'
   --set 'matrix.precision=["fp16","int8-fp16"]'
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
  run $NEW new-1 50 60; run $OLD old-1 50 60; run $NEW new-2 50 10; run $OLD old-2 50 10
  step ratios
  timeout 10 python3 benchmarks/cutlass_ratios.py $W >$W/ratios.md 2>&1
else echo "check failed: no runs" >>$W/steps.txt; fi
# 3. ncu on each codes kernel (rule only, short protocol: the numbers come from ncu).
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
SHORT=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.precision=["int8-fp16"]' --set 'matrix.batch_size=[64]'
       --set protocol.warmup_s=0.3 --set protocol.warmup_max_s=5 --set protocol.min_window_s=0.3 --set protocol.repeats=1
       --set protocol.idle_baseline_s=0.3 --set protocol.idle_settle_s=0.1 --set protocol.stabilize_s=0.1
       --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
       --set device.attention_padding=skip --set device.attention_activation_scales=static
       --set device.ffn_activation_scales=static)
prof() { local bin=$1 name=$2 regex=$3
  if [ -z "$NCU" ] || [ "$(left)" -lt 50 ]; then echo "skipped ncu $name: $(left) s left, ncu '${NCU}'" >>$W/steps.txt; return; fi
  local l=$(( $(left) - 15 )); [ $l -gt 70 ] && l=70
  step "ncu $name ($regex, timeout $l s)"
  timeout -k 5 -s INT $l $NCU --graph-profiling node --kernel-name-base demangled --kernel-name "regex:$regex" --launch-count 2 \
    --clock-control none --section SpeedOfLight --section WarpStateStats --section InstructionStats \
    --section SchedulerStats --section SourceCounters --import-source no -f -o $W/ncu-$name \
    $bin experiments/quantization_sweep.toml "${SHORT[@]}" --out $W/run-ncu-$name >$W/ncu-$name.log 2>&1
  echo "ncu $name exit $?" >>$W/steps.txt
  if [ -f $W/ncu-$name.ncu-rep ]; then
    timeout 20 $NCU -i $W/ncu-$name.ncu-rep --page details --print-units base >$W/ncu-$name-details.txt 2>&1
    timeout 30 $NCU -i $W/ncu-$name.ncu-rep --page source --csv --print-source sass >$W/ncu-$name-sass.csv 2>&1
    timeout 20 python3 .s14/h2/stalls.py $W/ncu-$name-sass.csv >$W/ncu-$name-stalls.txt 2>&1
  fi; }
prof $NEW new 'Pingpong.*CodesHalf2Op'
prof $OLD old 'Pingpong.*CodesTanhOp'
step done
cat $W/ratios.md 2>/dev/null | tail -30
