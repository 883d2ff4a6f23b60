#!/usr/bin/env bash
# s10 int8 part "int8-run10" (limit 40 s; after int8-check10): the flagship subset (DistilBERT-base random weights,
# seq 128, the Rotten Tomatoes sentences, quantize blocks:0-5, CUTLASS, fused embeddings, lean
# GELU, attention_padding = skip, static attention codes, static FFN steps, gemm_tactics = timed)
# with main's runner (old: .s10/bin/runner.xz) and branch int8s9's (new: ./runner.xz: session 9's
# epilogues promoted, and device.pair_norms = true, the pair norm kernels of norm_row.cuh),
# int8-fp16 at b64, alternating in one call:
#   old-1, new-1, new-p0 (the new binary with pair_norms off: the pair norms' own share),
#   then old-2, new-2, then fp16 b64 with each (if time is left)
# Every step under `timeout`, skipped when its limit no longer fits; results packed after each.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
LIM=${LIMIT_S:-40}
W=/tmp/int8run10; rm -rf $W; mkdir -p $W "$FINAL" /tmp/int8rbin10
pack() { tar -C $W -czf "$FINAL/int8run.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         [ -f $W/steps.txt ] && cp $W/steps.txt "$FINAL/"
         first=1; : >"$FINAL/summaries.csv"
         for r in $W/run-*/; do [ -f "$r/summary.csv" ] || continue; s=$(basename "$r"); s=${s#run-}
           if [ $first = 1 ]; then sed -n '1s/^/step,/p' "$r/summary.csv" >>"$FINAL/summaries.csv"; first=0; fi
           sed -n "2,\$s/^/$s,/p" "$r/summary.csv" >>"$FINAL/summaries.csv"; done
         # Each cell's GEMM picks and kernels, as its record states them.
         python3 - $W >"$FINAL/tactics.txt" 2>&1 <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/run-*/cells/*.json")):
    d = json.load(open(f)); c = d["cell"]; i = d.get("implementation") or {}
    print(f.split("/")[-3], c["precision"], c["batch_size"], "|", i.get("gemm_tactics", "(rule)"), "|", i.get("gemms", ""))
PY
         [ -s "$FINAL/summaries.csv" ] && python3 "$D/ratios.py" "$FINAL" >"$FINAL/ratios.md" 2>&1; true; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt
cat "$D/BUILT" >>$W/steps.txt 2>/dev/null; cat .s10/bin/BUILT >>$W/steps.txt 2>/dev/null
unxz() { timeout 40 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
[ -x /tmp/int8rbin10/old ] || unxz .s10/bin/runner.xz /tmp/int8rbin10/old
unxz "$D/runner.xz" /tmp/int8rbin10/new
for b in old new; do echo "$b: $(timeout 10 /tmp/int8rbin10/$b --version 2>&1)" >>$W/steps.txt; done
P=(--set 'matrix.quantize=["blocks:0-5"]'
   --set protocol.warmup_s=0.4 --set protocol.min_window_s=0.6 --set protocol.repeats=2
   --set protocol.idle_baseline_s=0.8 --set protocol.idle_settle_s=0.4 --set protocol.stabilize_s=0.3
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
# run NAME BIN LIMIT_S ARGS...: skipped when fewer than LIMIT_S + 2 s are left.
run() { local name=$1 bin=$2 limit=$3; shift 3
  local left=$(( LIM - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 2 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  step "runner $name ($bin)"
  local extra=(); [ $bin = new ] && [ "${name#new-p0}" = "$name" ] && extra=(--set device.pair_norms=true)
  timeout --foreground -k 3 -s INT $limit /tmp/int8rbin10/$bin experiments/quantization_sweep.toml "${P[@]}" "${extra[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
B64=(--set 'matrix.batch_size=[64]' --set 'matrix.precision=["int8-fp16"]')
F64=(--set 'matrix.batch_size=[64]' --set 'matrix.precision=["fp16"]')
run old-1 old 15 "${B64[@]}"
run new-1 new 15 "${B64[@]}"
run new-p0 new 13 "${B64[@]}"
run old-2 old 13 "${B64[@]}"
run new-2 new 13 "${B64[@]}"
run old-f old 12 "${F64[@]}"
run new-f new 12 "${F64[@]}"
step done
