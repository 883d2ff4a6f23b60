#!/usr/bin/env bash
# s10 int8 part "int8-check10" (limit 45 s), one binary: cutlass_check from branch int8s9.
#   cutlass_check --pairs (session 10; examples/int8_check/pairs.rs): the f16/bf16 residual +
#      layer norm kernels in pairs (norm_row.cuh, device.pair_norms) against the kernels they
#      replace in one process on fresh random inputs: add_layer_norm, bias_add_layer_norm and
#      add_layer_norm_packed (int8 and E4M3) bit for bit (values, codes, row scales), against
#      candle's plain norm within one rounding step, a NaN row reaching only its row, graph
#      replay == eager, both timed inside a CUDA graph at 8192 and 2048 rows x 768; then the fp16
#      and int8-fp16-static models' graph replay == eager with the pair norms on.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
LIM=${LIMIT_S:-45}
mkdir -p "$FINAL" /tmp/int8cbin10
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >"$FINAL/steps.txt" 2>&1
date -u >>"$FINAL/steps.txt"
cat "$D/BUILT" >>"$FINAL/steps.txt" 2>/dev/null
timeout 30 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/cutlass_check.xz" /tmp/int8cbin10/cutlass_check && chmod +x /tmp/int8cbin10/cutlass_check
echo "decompressed (+$(( $(date +%s) - T0 )) s)" >>"$FINAL/steps.txt"
left() { echo $(( LIM - 2 - ($(date +%s) - T0) )); }
# Session 10's pair norms (session 9's kernels passed cutlass_check --rows in the previous call).
# The output goes straight to $OUT: a run cut by the limit still brings back every line it printed.
L2=$(left)
timeout -k 2 $L2 /tmp/int8cbin10/cutlass_check --pairs >"$FINAL/cutlass_check_pairs.txt" 2>&1
echo "cutlass_check --pairs exit $? (limit $L2 s, +$(( $(date +%s) - T0 )) s)" >>"$FINAL/steps.txt"
echo "FAILED lines: $(grep -c FAILED "$FINAL/cutlass_check_pairs.txt")" >>"$FINAL/steps.txt"
