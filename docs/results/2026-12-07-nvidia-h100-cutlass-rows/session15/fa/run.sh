#!/usr/bin/env bash
# Session 15, part fa (limit ~200 s): what the promotion along K costs fp8-fp16 end to end. fp8-fp16 b16/b64 with the
# flagship keys but dynamic FFN scales (no codes kernel has fast accumulation), promoted (fa-off) against
# device.fp8_fast_accumulation = true (fa-on), alternating off, on, off, on; branch s15-measure's runner.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-200}
W=/tmp/s15fa; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
pack() { tar -C $W -czf "$FINAL/fa.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for r in $W/run-*; do [ -f $r/summary.csv ] && cp $r/summary.csv "$FINAL/summary-$(basename $r).csv"; done
         python3 - $W >"$FINAL/fa.md" 2>&1 <<'PY'
import csv, glob, sys, os, statistics as st
rows = {}
for p in sorted(glob.glob(sys.argv[1] + "/run-*/summary.csv")):
    name = os.path.basename(os.path.dirname(p))[4:-2]
    for r in csv.DictReader(open(p)):
        if r["status"] == "ok" and r["scope"] == "model":
            rows.setdefault((name, r["batch_size"]), []).append((float(r["latency_per_loop_ms"]), float(r["energy_per_inference_mj"]), r.get("fidelity_cosine_vs_fp32")))
print("| run | batch | ms (each) | mJ/inf (each) | cosine |\n| --- | ---: | --- | --- | --- |")
for k, v in sorted(rows.items()):
    print(f"| {k[0]} | {k[1]} | {' '.join(f'{x[0]:.3f}' for x in v)} | {' '.join(f'{x[1]:.2f}' for x in v)} | {v[0][2]} |")
PY
         true; }
trap pack EXIT
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv >$W/steps.txt 2>&1
cat .s14/bin/BUILT >>$W/steps.txt; unpack runner
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]' --set 'matrix.precision=["fp8-fp16"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=dynamic --set device.gemm_tactics=timed)
for i in 1 2; do for fa in false true; do
  n=fa-$([ $fa = true ] && echo on || echo off)-$i
  if [ "$(left)" -lt 45 ]; then echo "skipped $n: $(left) s left" >>$W/steps.txt; continue; fi
  echo "== $(date -u +%T) $n" >>$W/steps.txt
  timeout --foreground -k 3 -s INT 45 /tmp/s14/runner experiments/quantization_sweep.toml "${P[@]}" \
    --set device.fp8_fast_accumulation=$fa --out $W/run-$n >$W/run-$n.log 2>&1; echo "$n exit $?" >>$W/steps.txt
done; done
cp $W/steps.txt "$FINAL/"
