#!/usr/bin/env bash
# s7 int8 part 1 (45 s): cutlass_check --padding (examples/cutlass_check/padding.rs), see READY:
# device.attention_padding = "skip" against "compute" on fresh random Q/K/V, bias and padding masks
# (f16/bf16, 12 heads of 64 and of 32, the flagship's sentence lengths, uniform, full, an empty
# row): the contexts bit-equal, within the plain check's bound of the f32 batched-GEMM path, both
# timed in CUDA graphs; NaN in a valid key / query / padding key; the model's logits with skip
# against compute and both forwards timed in graphs; the model's graph replay = eager with skip.
# Output is written line by line, so a cut run keeps what finished.
set -uo pipefail
FINAL=${1:?usage: check.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$FINAL" /tmp/int8bin
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >"$FINAL/gpu.txt" 2>&1
date -u >>"$FINAL/gpu.txt"
echo "== $(date -u +%T) unpack" >"$FINAL/steps.txt"
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/cutlass_check.xz" /tmp/int8bin/cutlass_check && chmod +x /tmp/int8bin/cutlass_check
echo "== $(date -u +%T) cutlass_check --padding" >>"$FINAL/steps.txt"
timeout -k 2 ${CHECK_S:-38} /tmp/int8bin/cutlass_check --padding >"$FINAL/cutlass_check.txt" 2>&1
echo "cutlass_check exit $? at $(date -u +%T)" >>"$FINAL/steps.txt"
