#!/usr/bin/env bash
# s8 int8 call-2 part "int8-run" (160 s: cut from 200 at 20:08 after a refused start): the flagship subset (DistilBERT random weights, seq 128,
# the Rotten Tomatoes sentences, quantize blocks:0-5, CUTLASS, fused embeddings, lean GELU,
# attention_padding = skip, attention_activation_scales = static: session 7's best), with
# device.gemm_tactics at "rule" (off, today's default) and "timed" (on), alternating with PyTorch:
#   off-1 / on-1 : fp16 and int8-fp16 (static FFN steps) at b16/b64
#   PyTorch      : torch.compile reduce-overhead fp16, then PyTorch's W8A8 int8-fp16
#                  (benchmarks/pytorch_w8a8.py: torch._int_mm), both at b16/b64
#   on-2, fp8    : as time allows: int8/fp16 b64 timed again; fp8-fp16 b16/b64 (no E4M3 kind it
#                  runs has a second kernel of its erf; call 1 measured it)
# Every step under `timeout`, skipped when its limit no longer fits in the first 157 s; results
# packed after each (a cut call returns what finished).
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
W=/tmp/int8run8; rm -rf $W; mkdir -p $W "$FINAL" /tmp/int8rbin
pack() { tar -C $W -czf "$FINAL/int8run.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt torch.jsonl; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         first=1; : >"$FINAL/summaries.csv"
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] || continue; s=$(basename "$r"); s=${s#run-}
           if [ $first = 1 ]; then sed -n '1s/^/step,/p' "$r/summary.csv" >>"$FINAL/summaries.csv"; first=0; fi
           sed -n "2,\$s/^/$s,/p" "$r/summary.csv" >>"$FINAL/summaries.csv"; done
         # Each on-cell's GEMM picks, as its record states them.
         python3 - $W >"$FINAL/tactics.txt" 2>&1 <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/run-*/cells/*.json")):
    d = json.load(open(f)); c = d["cell"]; i = d.get("implementation") or {}
    print(f.split("/")[-3], c["precision"], c["batch_size"], "|", i.get("gemm_tactics", "(rule)"), "|", i.get("gemms", ""))
PY
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt
timeout 30 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/runner.xz" /tmp/int8rbin/runner && chmod +x /tmp/int8rbin/runner
timeout 10 /tmp/int8rbin/runner --version >>$W/steps.txt 2>&1
# The templates this binary was built with (main's at c7f55e3), carried: main may change its own.
P=(--templates "$D/templates" --set 'matrix.quantize=["blocks:0-5"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static)
ON=(--set device.gemm_tactics=timed)
INT8=(--set 'matrix.precision=["fp16","int8-fp16"]' --set device.ffn_activation_scales=static)
FP8=(--set 'matrix.precision=["fp8-fp16"]')
# run NAME LIMIT_S ARGS...: skipped when fewer than LIMIT_S + 2 s of the first 157 are left.
run() { local name=$1 limit=$2; shift 2
  local left=$(( ${LIMIT_S:-157} - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 2 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  step "runner $name"
  timeout -k 3 -s INT $limit /tmp/int8rbin/runner experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
B2='matrix.batch_size=[16,64]'
B64='matrix.batch_size=[64]'
run off-1 36 --set "$B2" "${INT8[@]}"
run on-1 38 --set "$B2" "${INT8[@]}" "${ON[@]}"
# PyTorch: every second left, at most 80 (its fp16 and W8A8 compiles need ~70); JSON lines are
# written as each cell finishes.
left=$(( ${LIMIT_S:-157} - ($(date +%s) - T0) - 2 ))
[ $left -gt 80 ] && left=80
if [ $left -ge 30 ]; then
  step "PyTorch (limit $left s)"
  timeout -k 3 $left python3 benchmarks/pytorch_reference.py $W/torch.jsonl --batch-sizes 16,64 --precisions "" \
    --compile-precisions fp16 --w8a8-precisions int8-fp16 --compile-modes reduce-overhead --window-s 0.8 >$W/torch.log 2>&1
  echo "torch exit $?" >>$W/steps.txt
else echo "skipped PyTorch: $left s left" >>$W/steps.txt; fi
run on-2 22 --set "$B64" "${INT8[@]}" "${ON[@]}"
run fp8 24 --set "$B2" "${FP8[@]}" "${ON[@]}"
step done
