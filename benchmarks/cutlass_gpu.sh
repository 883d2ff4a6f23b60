#!/usr/bin/env bash
# Issue 31's GPU call: the CUTLASS GEMMs' checks, then the benchmark, on one Hopper GPU, in under
# 8 minutes (about 3 for the checks, 4 for the runs).
#   1. cutlass_check: every CUTLASS kernel against the CPU numerics reference (fresh random inputs,
#      DistilBERT/BERT and decoder shapes, FP8 with and without fast accumulation, the packed FFN,
#      the float GELU GEMM, NaN rows through every kernel), timed against the cuBLASLt path it
#      replaces; every configuration of the kinds that have several, timed at the same shapes (the
#      row rule's evidence); the CUDA-graph replay of DistilBERT against eager through CUTLASS
#   2. the flagship subset (fp16, int8-fp16, fp8-fp16; batch 16 and 64; quantize blocks:0-5 = the six
#      blocks' linears, head in fp16) with cuBLASLt then with CUTLASS, alternating ROUNDS times;
#      fp8-fp16 with device.fp8_fast_accumulation through both; and PyTorch (fp16 reduce-overhead,
#      and its own W8A8: torch._int_mm / torch._scaled_mm, benchmarks/pytorch_w8a8.py) in the same
#      rounds
#   3. the ratio tables (benchmarks/cutlass_ratios.py)
# Every part writes into a work folder as it goes; on exit (a call cut short too) OUT gets
# results.tar.gz of all of it and the few text files to read first (a device call brings back at
# most 8 files).
#
#   ROUNDS=1 bash benchmarks/cutlass_gpu.sh OUT [BIN_DIR]     # BIN_DIR: runner.xz, cutlass_check.xz
#
# BIN_DIR comes from benchmarks/cutlass_build.sh (.cuda-bin/cutlass, carried by the device call).
set -uo pipefail
cd "$(dirname "$0")/.."
FINAL=${1:?usage: cutlass_gpu.sh OUT [BIN_DIR]}
BIN=${2:-.cuda-bin}
ROUNDS=${ROUNDS:-1}
OUT=/tmp/cutlass-gpu-out
mkdir -p "$FINAL" "$OUT" /tmp/cutlass-bin
pack() {
    tar -C "$OUT" -czf "$FINAL/results.tar.gz" --exclude='*.html' . 2>/dev/null
    for f in steps.txt ratios.md cutlass_check.txt gpu.txt sass-gmma.txt configs.txt; do
        [ -f "$OUT/$f" ] && cp "$OUT/$f" "$FINAL/"
    done
}
trap pack EXIT
# xz: the binaries and the repository must fit the 64 MiB a device call carries.
for b in runner cutlass_check; do
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
        "$BIN/$b.xz" /tmp/cutlass-bin/$b && chmod +x /tmp/cutlass-bin/$b
done
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm \
    --format=csv >"$OUT/gpu.txt" 2>&1
date -u >>"$OUT/gpu.txt"
# Packed at every step, so a call stopped from outside still brings back what finished.
step() { pack; echo "== $(date -u +%T) $*" | tee -a "$OUT/steps.txt"; }
# Which tensor-core instructions the CUTLASS kernels hold (IGMMA: int8 wgmma; QGMMA: FP8; HGMMA: f16).
timeout 30 cuobjdump -sass /tmp/cutlass-bin/cutlass_check 2>/dev/null | grep -oE "\b[IQH]GMMA\.[A-Z0-9.]*" \
    | sort | uniq -c >"$OUT/sass-gmma.txt"
step cutlass_check
timeout "${CHECK_S:-230}" /tmp/cutlass-bin/cutlass_check >"$OUT/cutlass_check.txt" 2>&1
echo "cutlass_check exit $?" >>"$OUT/steps.txt"
# The configuration sweep on its own, to read first (the row rule's evidence).
grep "^config " "$OUT/cutlass_check.txt" >"$OUT/configs.txt" || true
P=(--set 'matrix.precision=["fp16","int8-fp16","fp8-fp16"]' --set 'matrix.batch_size=[16,64]'
   --set 'matrix.quantize=["blocks:0-5"]' --set protocol.min_window_s=${WINDOW_S:-1.5}
   --set protocol.repeats=${REPEATS:-3} --set protocol.idle_baseline_s=3.0 --set protocol.idle_settle_s=2.0)
for round in $(seq 1 "$ROUNDS"); do
    for lib in cublaslt cutlass; do
        step "round $round runner $lib"
        timeout "${RUN_S:-90}" /tmp/cutlass-bin/runner experiments/quantization_sweep.toml "${P[@]}" \
            --set device.gemm_library=$lib --out "$OUT/run-$lib-$round" >"$OUT/run-$lib-$round.log" 2>&1
        echo "runner $lib exit $?" >>"$OUT/steps.txt"
    done
    # FP8 with fast accumulation (partial sums kept in the tensor cores' accumulator): cuBLASLt's
    # and CUTLASS's FP8FastAccum kernels; fp16 of the runs above is the baseline.
    for lib in cublaslt cutlass; do
        step "round $round runner ${lib} fp8 fast accumulation"
        timeout "${FAST_S:-60}" /tmp/cutlass-bin/runner experiments/quantization_sweep.toml "${P[@]}" \
            --set 'matrix.precision=["fp8-fp16"]' --set protocol.repeats=2 \
            --set device.fp8_fast_accumulation=true --set device.gemm_library=$lib \
            --out "$OUT/run-${lib}fast-$round" >"$OUT/run-${lib}fast-$round.log" 2>&1
        echo "runner ${lib} fast exit $?" >>"$OUT/steps.txt"
    done
    step "round $round PyTorch"
    timeout "${TORCH_S:-90}" python3 benchmarks/pytorch_reference.py "$OUT/torch-$round.jsonl" \
        --batch-sizes 16,64 --precisions "" --compile-precisions fp16 --compile-modes reduce-overhead \
        --w8a8-precisions int8-fp16,fp8-fp16 --window-s 2.0 >"$OUT/torch-$round.log" 2>&1
    echo "torch exit $?" >>"$OUT/steps.txt"
done
step ratios
python3 benchmarks/cutlass_ratios.py "$OUT" >"$OUT/ratios.md" 2>&1
cat "$OUT/ratios.md"
step done
