#!/usr/bin/env bash
# s6 int8 part 1 (45 s): cutlass_check --lean, built from branch int8b (see READY):
# device.gelu_epilogue = "lean" (src/ops/kernels/cutlass/gelu_lean.cuh): every FFN-in GELU kernel
# (standard / lean / fitted tanh; cooperative / ping-pong) forced in turn at 8192 x 768 -> 3072
# against the CPU and timed in CUDA graphs, the int8 codes kernels against the standard one, the
# model's graph replay = eager with the lean kernels, the static FFN check, NaN rows, the float
# FFN-in check, then 2048 rows, decoder shapes, the plain int8 configurations. Output is written
# line by line, so a cut run keeps what finished.
set -uo pipefail
FINAL=${1:?usage: check.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$FINAL" /tmp/int8bin
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >"$FINAL/gpu.txt" 2>&1
date -u >>"$FINAL/gpu.txt"
echo "== $(date -u +%T) unpack" >"$FINAL/steps.txt"
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/cutlass_check.xz" /tmp/int8bin/cutlass_check && chmod +x /tmp/int8bin/cutlass_check
echo "== $(date -u +%T) cutlass_check --lean" >>"$FINAL/steps.txt"
timeout -k 2 ${CHECK_S:-38} /tmp/int8bin/cutlass_check --lean >"$FINAL/cutlass_check.txt" 2>&1
echo "cutlass_check exit $? at $(date -u +%T)" >>"$FINAL/steps.txt"
