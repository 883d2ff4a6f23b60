#!/usr/bin/env bash
# s9 int8 call-2 part "int8-check" (limit 68 s): cutlass_check --rows from branch int8s9
# (examples/cutlass_check/rows.rs): session 9's epilogues (gemm_rows.cuh: the column vectors in
# one round trip and wider subtiles; gemm_codes_lean.cuh: the codes in one node, ties to even)
# on fresh random inputs: every int8 -> f16 kernel the tactics time at the flagship's shapes
# against the CPU and bit-equal to the rule's, timed; every int8 codes kernel within one step of
# the standard one, timed; the static FFN against the CPU (lean rule's kernel, then the node-only
# kernel forced), NaN rows; the models (tactics timed, lean) graph = eager; the other shapes.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
LIM=${LIMIT_S:-68}
mkdir -p "$FINAL" /tmp/int8cbin9
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >"$FINAL/steps.txt" 2>&1
date -u >>"$FINAL/steps.txt"
cat "$D/BUILT" >>"$FINAL/steps.txt" 2>/dev/null
timeout 30 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/cutlass_check.xz" /tmp/int8cbin9/cutlass_check && chmod +x /tmp/int8cbin9/cutlass_check
echo "decompressed (+$(( $(date +%s) - T0 )) s)" >>"$FINAL/steps.txt"
LEFT=$(( LIM - 3 - ($(date +%s) - T0) ))
# The output goes straight to $OUT: a run cut by the limit still brings back every line it printed.
timeout -k 2 $LEFT /tmp/int8cbin9/cutlass_check --rows >"$FINAL/cutlass_check.txt" 2>&1
echo "cutlass_check --rows exit $? (+$(( $(date +%s) - T0 )) s)" >>"$FINAL/steps.txt"
grep -c FAILED "$FINAL/cutlass_check.txt" >>"$FINAL/steps.txt"
