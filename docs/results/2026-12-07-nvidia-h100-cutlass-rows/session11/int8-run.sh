#!/usr/bin/env bash
# Session 11, part int8 (limit ~85 s; after part check): the flagship subset (DistilBERT-base random weights, seq 128,
# Rotten Tomatoes sentences, quantize blocks:0-5, CUTLASS, fused embeddings, lean GELU, attention_padding = skip,
# static attention codes, static FFN steps, gemm_tactics = timed) with branch s11's runner, device.pair_norms off (old-*)
# and on (new-*) alternating in one call: int8-fp16 b64 old-1 new-1 old-2 new-2, int8-fp16 b16 old-s new-s, then fp16
# b64 old-f new-f (the pair norms also run in fp16's f16 norms). Every step under `timeout`, skipped when it no
# longer fits; results packed after each; ratios.md by ratios.py.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=.s11/int8
T0=$(date +%s); LIM=${LIMIT_S:-85}
W=/tmp/s11-int8; rm -rf $W; mkdir -p $W "$FINAL"
source .s11/unpack.sh
pack() { tar -C $W -czf "$FINAL/int8run.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         [ -f $W/steps.txt ] && cp $W/steps.txt "$FINAL/"
         first=1; : >"$FINAL/summaries.csv"
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] || continue; s=$(basename "$r"); s=${s#run-}
           if [ $first = 1 ]; then sed -n '1s/^/step,/p' "$r/summary.csv" >>"$FINAL/summaries.csv"; first=0; fi
           sed -n "2,\$s/^/$s,/p" "$r/summary.csv" >>"$FINAL/summaries.csv"; done
         python3 - $W >"$FINAL/tactics.txt" 2>&1 <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/run-*/cells/*.json")):
    d = json.load(open(f)); c = d["cell"]; i = d.get("implementation") or {}
    print(f.split("/")[-3], c["precision"], c["batch_size"], "|", i.get("pair_norms", "-"), "|", i.get("gemm_tactics", "(rule)"), "|", i.get("gemms", ""), "|", i.get("norms", ""))
PY
         [ -s "$FINAL/summaries.csv" ] && python3 "$D/ratios.py" "$FINAL" >"$FINAL/ratios.md" 2>&1; true; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s11/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner || { echo "no runner" >>$W/steps.txt; exit 9; }
R=/tmp/s11/runner
echo "runner: $(timeout 10 $R --version 2>&1)" >>$W/steps.txt
P=(--set protocol.warmup_s=0.4 --set protocol.min_window_s=0.6 --set protocol.repeats=2
   --set protocol.idle_baseline_s=0.8 --set protocol.idle_settle_s=0.4 --set protocol.stabilize_s=0.3
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
run() { local name=$1 limit=$2; shift 2
  local left=$(( LIM - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 2 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  local on=false; [ "${name#new}" != "$name" ] && on=true
  step "runner $name (pair_norms=$on)"
  timeout --foreground -k 3 -s INT $limit $R experiments/quantization_sweep.toml "${P[@]}" --set device.pair_norms=$on "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
Q=(--set 'matrix.quantize=["blocks:0-5"]')
B64=("${Q[@]}" --set 'matrix.batch_size=[64]' --set 'matrix.precision=["int8-fp16"]')
B16=("${Q[@]}" --set 'matrix.batch_size=[16]' --set 'matrix.precision=["int8-fp16"]')
F64=(--set 'matrix.batch_size=[64]' --set 'matrix.precision=["fp16"]')
if [ "${INT8_STEPS:-all}" = fp16 ]; then
    # fp16 b64 alone, pair norms off and on twice (the first call's fp16 steps were refused: quantize with no 8-bit precision)
    run old-f 13 "${F64[@]}"; run new-f 11 "${F64[@]}"; run old-f2 11 "${F64[@]}"; run new-f2 11 "${F64[@]}"
else
run old-1 16 "${B64[@]}"
run new-1 14 "${B64[@]}"
run old-2 12 "${B64[@]}"
run new-2 12 "${B64[@]}"
run old-f 11 "${F64[@]}"
run new-f 11 "${F64[@]}"
run old-s 10 "${B16[@]}"
run new-s 10 "${B16[@]}"
fi
step done
cat "$FINAL/ratios.md" 2>/dev/null | tail -12
