#!/usr/bin/env bash
# s9 int8 call-2 part "int8-run" (limit 120 s): the flagship subset (DistilBERT-base random
# weights, seq 128, the Rotten Tomatoes sentences, quantize blocks:0-5, CUTLASS, fused embeddings,
# lean GELU, attention_padding = skip, static attention codes, static FFN steps, gemm_tactics =
# timed) with main's runner (old: .s9/bin/runner.xz) and branch int8s9's (new: ./runner.xz,
# session 9's epilogues), alternating in one call:
#   old-1 / new-1 : fp16 and int8-fp16 at b16/b64
#   old-2 / new-2 : int8-fp16 at b64 again
# (fp16's kernels are the same in both binaries; PyTorch's reference is session 8's: no time.)
# Every step under `timeout`, skipped when its limit no longer fits; results packed after each.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
LIM=${LIMIT_S:-120}
W=/tmp/int8run9; rm -rf $W; mkdir -p $W "$FINAL" /tmp/int8rbin9
pack() { tar -C $W -czf "$FINAL/int8run.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt torch.jsonl; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
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
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt
cat "$D/BUILT" >>$W/steps.txt 2>/dev/null; cat .s9/bin/BUILT >>$W/steps.txt 2>/dev/null
unxz() { timeout 40 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
unxz .s9/bin/runner.xz /tmp/int8rbin9/old
unxz "$D/runner.xz" /tmp/int8rbin9/new
for b in old new; do echo "$b: $(timeout 10 /tmp/int8rbin9/$b --version 2>&1)" >>$W/steps.txt; done
P=(--set 'matrix.quantize=["blocks:0-5"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
# run NAME BIN LIMIT_S ARGS...: skipped when fewer than LIMIT_S + 2 s are left.
run() { local name=$1 bin=$2 limit=$3; shift 3
  local left=$(( LIM - ($(date +%s) - T0) ))
  if [ $left -lt $(( limit + 2 )) ]; then echo "skipped $name: $left s left" >>$W/steps.txt; return; fi
  step "runner $name ($bin)"
  timeout -k 3 -s INT $limit /tmp/int8rbin9/$bin experiments/quantization_sweep.toml "${P[@]}" "$@" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
B2=(--set 'matrix.batch_size=[16,64]' --set 'matrix.precision=["fp16","int8-fp16"]')
B64=(--set 'matrix.batch_size=[64]' --set 'matrix.precision=["int8-fp16"]')
# (int8-check runs first in the call and pays a fresh machine's PTX JIT, if any.)
run old-1 old 36 "${B2[@]}"
run new-1 new 34 "${B2[@]}"
run old-2 old 18 "${B64[@]}"
run new-2 new 18 "${B64[@]}"
step done
