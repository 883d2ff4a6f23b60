#!/usr/bin/env bash
# Issue 31's short GPU call (BUDGET_S, default 270 s, for every command together; each step under
# `timeout`, capped so the steps after it keep their time; results packed after every step, so a
# call cut short still returns what finished):
#   1. cutlass_check --quick: the CUTLASS kernels against the CPU reference (f16 outputs), the
#      packed FFN checked step by step, the packed attention against the plain path, NaN rows,
#      the 8192-row configuration sweep, the model's graph replay against eager (8-bit);
#   2. the flagship subset through CUTLASS (fp16, int8-fp16, fp8-fp16 at batch 16 and 64,
#      quantize blocks:0-5) and fp16 through cuBLASLt, the baseline;
#   3. where a forward's time goes: ncu's gpu__time_duration of every kernel of two eager
#      forwards (fp16 cuBLASLt, int8-fp16 CUTLASS; batch 16 and 64), with the GPU's clocks left
#      alone (--clock-control none) and caches as the forward leaves them (--cache-control none);
#      benchmarks/ncu_profile.py turns it into profile.md;
#   4. PyTorch in the same call (reduce-overhead fp16 and its own W8A8), with the time left;
#   5. the ratio tables (benchmarks/cutlass_ratios.py).
#
#   bash benchmarks/cutlass_short_gpu.sh OUT BIN_DIR     # BIN_DIR: runner.xz, cutlass_check.xz
#
# The runner reads the report templates it was built with (BIN_DIR/templates, copied beside the
# binaries), not the checkout's: a binary rendering newer templates failed every report of the
# 2026-12-06 H100 call (docs/results/2026-12-06-nvidia-h100-cutlass/NOTES.md).
set -uo pipefail
cd "$(dirname "$0")/.."
FINAL=${1:?usage: cutlass_short_gpu.sh OUT BIN_DIR}
BIN=${2:?usage: cutlass_short_gpu.sh OUT BIN_DIR}
BUDGET_S=${BUDGET_S:-270}  # seconds for every command together
START=$(date +%s)
OUT=/tmp/cutlass-short-out
rm -rf "$OUT" && mkdir -p "$FINAL" "$OUT" /tmp/cutlass-bin
pack() {
    tar -C "$OUT" -czf "$FINAL/results.tar.gz" --exclude='*.html' . 2>/dev/null
    for f in steps.txt ratios.md cutlass_check.txt gpu.txt profile.md; do
        [ -f "$OUT/$f" ] && cp "$OUT/$f" "$FINAL/"
    done
}
trap pack EXIT
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
# A step's limit: its own (MAX), or less where the budget must keep RESERVE seconds for the steps
# after it (the call's limit is BUDGET_S in all; the coordinator may lower it).
cap() { local l=$(($(left) - $2)); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
step() { pack; echo "== $(date -u +%T) (+$(($(date +%s) - START)) s) $*" | tee -a "$OUT/steps.txt"; }
for b in runner cutlass_check; do
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
        "$BIN/$b.xz" /tmp/cutlass-bin/$b && chmod +x /tmp/cutlass-bin/$b
done
TEMPLATES=(); [ -d "$BIN/templates" ] && TEMPLATES=(--templates "$BIN/templates")
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm \
    --format=csv >"$OUT/gpu.txt" 2>&1
date -u >>"$OUT/gpu.txt"

step cutlass_check --quick
timeout "$(cap 70 141)" /tmp/cutlass-bin/cutlass_check --quick >"$OUT/cutlass_check.txt" 2>&1
echo "cutlass_check exit $?" >>"$OUT/steps.txt"

P=(--set 'matrix.batch_size=[16,64]'
   --set protocol.warmup_s=1.0 --set protocol.min_window_s=1.0 --set protocol.repeats=3 --set protocol.idle_baseline_s=3.0
   --set protocol.idle_settle_s=2.0)
step runner cutlass
timeout "$(cap 65 76)" /tmp/cutlass-bin/runner experiments/quantization_sweep.toml "${P[@]}" "${TEMPLATES[@]}" \
    --set 'matrix.precision=["fp16","int8-fp16","fp8-fp16"]' --set 'matrix.quantize=["blocks:0-5"]' \
    --set device.gemm_library=cutlass \
    --out "$OUT/run-cutlass-1" >"$OUT/run-cutlass-1.log" 2>&1
echo "runner cutlass exit $?" >>"$OUT/steps.txt"
# fp16 alone: no quantize axis (the runner refuses one without an 8-bit precision to apply to; the
# H100 call of 07:33 lost this baseline to it).
step runner cublaslt fp16
timeout "$(cap 28 48)" /tmp/cutlass-bin/runner experiments/quantization_sweep.toml "${P[@]}" "${TEMPLATES[@]}" \
    --set 'matrix.precision=["fp16"]' --set device.gemm_library=cublaslt \
    --out "$OUT/run-cublaslt-1" >"$OUT/run-cublaslt-1.log" 2>&1
echo "runner cublaslt exit $?" >>"$OUT/steps.txt"

NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
n=4
for cfg in "int8-fp16 cutlass 64" "fp16 cublaslt 64" "int8-fp16 cutlass 16" "fp16 cublaslt 16"; do
    set -- $cfg
    n=$((n - 1))
    step "ncu $cfg"
    if [ -z "$NCU" ]; then echo "no ncu on this machine" >>"$OUT/steps.txt"; break; fi
    T=$(cap 12 $((12 * n + 2)))
    [ "$T" -lt 5 ] && { echo "ncu $cfg: no time left" >>"$OUT/steps.txt"; continue; }
    timeout "$T" "$NCU" --profile-from-start off --metrics gpu__time_duration.sum --csv --print-units base \
        --clock-control none --cache-control none --log-file "$OUT/ncu-$1-$2-$3.log" \
        /tmp/cutlass-bin/cutlass_check --profile "$1" "$2" "$3" >"$OUT/ncu-$1-$2-$3.csv" 2>&1
    echo "ncu $cfg exit $?" >>"$OUT/steps.txt"
done
python3 benchmarks/ncu_profile.py "$OUT" >"$OUT/profile.md" 2>&1

T=$(($(left) - 3))
step "PyTorch (${T} s left)"
if [ "$T" -gt 20 ]; then
    timeout "$T" python3 benchmarks/pytorch_reference.py "$OUT/torch-1.jsonl" \
        --batch-sizes 16,64 --precisions "" --compile-precisions fp16 --compile-modes reduce-overhead \
        --w8a8-precisions int8-fp16,fp8-fp16 --window-s 1.0 >"$OUT/torch-1.log" 2>&1
    echo "torch exit $?" >>"$OUT/steps.txt"
fi
step ratios
python3 benchmarks/cutlass_ratios.py "$OUT" >"$OUT/ratios.md" 2>&1
step done
