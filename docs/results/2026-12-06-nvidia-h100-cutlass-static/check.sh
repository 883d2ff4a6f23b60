#!/usr/bin/env bash
# s5 int8 part 1 (<= 80 s): cutlass_check --static, built from the int8 branch (see READY):
# the packed FFN's split check (f16: int8, E4M3, E4M3 fast accumulation at 8192 / 2048 rows), the
# static-steps FFN (codes vs CPU, saturation, NaN row, FFN-out on the codes, timed against the
# dynamic path), the model's graph replay = eager with device.ffn_activation_scales = "static".
set -uo pipefail
FINAL=${1:?usage: check.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$FINAL" /tmp/int8bin
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >"$FINAL/gpu.txt" 2>&1
date -u >>"$FINAL/gpu.txt"
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/cutlass_check.xz" /tmp/int8bin/cutlass_check && chmod +x /tmp/int8bin/cutlass_check
echo "== $(date -u +%T) cutlass_check --static" >"$FINAL/steps.txt"
timeout -k 3 ${CHECK_S:-74} /tmp/int8bin/cutlass_check --static >"$FINAL/cutlass_check.txt" 2>&1
echo "cutlass_check exit $? at $(date -u +%T)" >>"$FINAL/steps.txt"
