#!/usr/bin/env bash
# Session 12, part flag (limit ~230 s): issue 31's flagship subset on this card with main 0dc2b7c (device.pair_norms
# on by default since 463b445), in one call, alternating with PyTorch:
#   cutlass_check --pairs      the pair norm kernels bit for bit against the kernels they replace (first H200 check)
#   run-cutlass-1              fp16, int8-fp16, fp8-fp16 at b16/b64, quantize blocks:0-5, the flagship keys (CUTLASS,
#                              fused embeddings, lean GELU, attention_padding = skip, static attention codes, static
#                              FFN steps, gemm_tactics = timed)
#   torch-1.jsonl              PyTorch: torch.compile reduce-overhead fp16, its own W8A8 (int8 torch._int_mm, fp8
#                              torch._scaled_mm), b16/b64 (benchmarks/pytorch_reference.py)
#   run-cutlass-2              run-cutlass-1 again (the alternation's second half)
#   ratios.md                  benchmarks/cutlass_ratios.py over both runs and PyTorch
# Every step under `timeout`, skipped when it no longer fits; results packed after each.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
T0=$(date +%s); LIM=${LIMIT_S:-230}
W=/tmp/s12-flag; rm -rf $W; mkdir -p $W "$FINAL"
source .s12/unpack.sh
pack() { tar -C $W -czf "$FINAL/flag.tar.gz" --exclude='*.html' --exclude=charts --exclude=traces . 2>/dev/null
         for f in steps.txt ratios.md cutlass_check_pairs.txt torch-1.jsonl; do [ -f $W/$f ] && cp $W/$f "$FINAL/"; done
         python3 - $W >"$FINAL/tactics.txt" 2>&1 <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/run-*/cells/*.json")):
    d = json.load(open(f)); c = d["cell"]; i = d.get("implementation") or {}
    print(f.split("/")[-3], c["precision"], c["batch_size"], "|", i.get("layer_norm", "-"), "|", i.get("gemm_tactics", "(rule)"), "|", i.get("gemms", ""))
PY
         true; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a $W/steps.txt; }
left() { echo $(( LIM - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >$W/steps.txt 2>&1
date -u >>$W/steps.txt; cat .s12/bin/BUILT >>$W/steps.txt 2>/dev/null
unpack runner & unpack cutlass_check & wait
R=/tmp/s12/runner
echo "runner: $(timeout 10 $R --version 2>&1)" >>$W/steps.txt
if [ -x /tmp/s12/cutlass_check ] && [ "$(left)" -gt 200 ]; then
  step "cutlass_check --pairs (timeout 30 s)"
  timeout -s KILL 30 /tmp/s12/cutlass_check --pairs >$W/cutlass_check_pairs.txt 2>&1; echo "cutlass_check exit $?" >>$W/steps.txt
fi
P=(--set 'matrix.quantize=["blocks:0-5"]' --set 'matrix.batch_size=[16,64]'
   --set 'matrix.precision=["fp16","int8-fp16","fp8-fp16"]'
   --set protocol.warmup_s=0.5 --set protocol.min_window_s=0.8 --set protocol.repeats=3
   --set protocol.idle_baseline_s=2.0 --set protocol.idle_settle_s=1.0 --set protocol.stabilize_s=0.5
   --set device.gemm_library=cutlass --set device.fused_embeddings=true --set device.gelu_epilogue=lean
   --set device.attention_padding=skip --set device.attention_activation_scales=static
   --set device.ffn_activation_scales=static --set device.gemm_tactics=timed)
run() { local name=$1 limit=$2 reserve=$3
  if [ "$(left)" -lt $(( limit + reserve )) ]; then echo "skipped $name: $(left) s left" >>$W/steps.txt; return; fi
  step "runner $name (timeout $limit s)"
  timeout --foreground -k 3 -s INT $limit $R experiments/quantization_sweep.toml "${P[@]}" \
    --out $W/run-$name >$W/run-$name.log 2>&1; echo "runner $name exit $?" >>$W/steps.txt; }
run cutlass-1 55 100
T=$(( $(left) - 60 )); [ $T -gt 110 ] && T=110
if [ $T -ge 40 ]; then
  step "PyTorch (timeout $T s)"
  timeout -k 3 $T python3 benchmarks/pytorch_reference.py $W/torch-1.jsonl --batch-sizes 16,64 --precisions "" \
    --compile-precisions fp16 --w8a8-precisions int8-fp16,fp8-fp16 --compile-modes reduce-overhead --window-s 0.8 \
    >$W/torch.log 2>&1
  echo "torch exit $?" >>$W/steps.txt
else echo "skipped PyTorch: $(left) s left" >>$W/steps.txt; fi
run cutlass-2 50 3
step ratios
timeout 10 python3 benchmarks/cutlass_ratios.py $W >$W/ratios.md 2>&1
step done
tail -30 $W/ratios.md
