#!/usr/bin/env bash
# Session 13, part conf (limit ~150 s): the landed E4M3 rule (2636029, one static FFN step per tensor for fp8;
# a step per column kept for int8) confirmed with the landed code, main's binary, not session 12's experiment
# knobs: fp8-fp16 and int8-fp16 b16, quantize blocks:0-5, the flagship keys with static attention and FFN steps,
# 1 window of >= 0.3 s (the cosine and the record's implementation are the result; expected fp8 ~0.9992, int8
# 0.99983), then `cutlass_check --static` if time is left. Every step under `timeout`; packed after each.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-150}
W=/tmp/s13-conf; rm -rf $W; mkdir -p $W "$FINAL"
source .s13/unpack.sh
pack() { tar -C $W -czf "$FINAL/conf.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt cutlass_check_static.txt fid.txt; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         [ -f $W/run-conf/summary.csv ] && cp $W/run-conf/summary.csv "$FINAL/summary.csv"
         python3 - $W >"$FINAL/implementation.txt" 2>&1 <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/run-*/cells/*.json")):
    d = json.load(open(f)); c = d["cell"]; i = d.get("implementation") or {}
    print(c["precision"], c["batch_size"], "| ffn:", i.get("ffn_activation_scales", "-"), "| attention:", i.get("attention_activation_scales", "-"))
PY
         true; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,clocks.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s13/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner & unpack cutlass_check & wait
R=/tmp/s13/runner
echo "runner: $(timeout 10 $R --version 2>&1)" >>$W/steps.txt
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16]'
   --set 'matrix.precision=["fp8-fp16","int8-fp16"]'
   --set protocol.warmup_s=0.2 --set protocol.min_window_s=0.3 --set protocol.repeats=1
   --set protocol.idle_baseline_s=0.3 --set protocol.idle_settle_s=0.1 --set protocol.stabilize_s=0.1
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static)
L=$(( $(left) - 5 )); [ $L -gt 120 ] && L=120
step "runner conf (timeout $L s)"
timeout --foreground -k 3 -s INT $L $R experiments/quantization_sweep.toml "${P[@]}" --out $W/run-conf >$W/run-conf.log 2>&1
echo "runner conf exit $?" >>$W/steps.txt; tail -n 5 $W/run-conf.log >>$W/steps.txt
python3 - $W/run-conf/summary.csv >$W/fid.txt 2>&1 <<'PY'
import csv, sys
for x in csv.DictReader(open(sys.argv[1])):
    print(x['precision'], x['batch_size'], 'ms', x.get('latency_per_loop_ms'), 'cosine', x.get('fidelity_cosine_vs_fp32'),
          'min', x.get('fidelity_cosine_min') or x.get('fidelity_cosine_vs_fp32_min'), 'labels', x.get('fidelity_label_agreement'))
PY
cat $W/fid.txt
if [ -x /tmp/s13/cutlass_check ] && [ "$(left)" -gt 25 ]; then
  step "cutlass_check --static (timeout $(( $(left) - 3 )) s)"
  timeout -s KILL $(( $(left) - 3 )) /tmp/s13/cutlass_check --static >$W/cutlass_check_static.txt 2>&1; echo "cutlass_check exit $?" >>$W/steps.txt
else echo "skipped cutlass_check: $(left) s left" >>$W/steps.txt; fi
step done
