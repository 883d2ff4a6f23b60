#!/usr/bin/env bash
# s8 int8 call-2 part "int8-check" (45 s): cutlass_check --tactics (examples/cutlass_check/tactics.rs):
# every int8 -> f16 CUTLASS kernel device.gemm_tactics = "timed" chooses among (session 8's three new
# configurations among them) against the CPU reference and the rule's kernel on fresh random inputs,
# timed in CUDA graphs, at DistilBERT/BERT's and the decoders' shapes; NaN rows through the new
# kernels; the models with tactics timed (graph replay = eager) and the picks the record names.
set -uo pipefail
OUT=${1:?usage: check.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT" /tmp/int8cbin
T0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >"$OUT/gpu.txt" 2>&1
date -u >>"$OUT/gpu.txt"
timeout 20 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/cutlass_check.xz" /tmp/int8cbin/cutlass_check && chmod +x /tmp/int8cbin/cutlass_check
echo "decompressed (+$(( $(date +%s) - T0 )) s)" >"$OUT/steps.txt"
LEFT=$(( 43 - ($(date +%s) - T0) ))
timeout -k 2 $LEFT /tmp/int8cbin/cutlass_check --tactics >"$OUT/cutlass_check.txt" 2>&1
echo "cutlass_check --tactics exit $? (+$(( $(date +%s) - T0 )) s)" >>"$OUT/steps.txt"
# If >= 14 s remain: ncu over two eager int8-fp16 CUTLASS forwards at batch 64 (cutlass_check
# --profile: dynamic scales, the row rule's kernels, random tokens), kernel by kernel.
LEFT=$(( 43 - ($(date +%s) - T0) ))
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
if [ "$LEFT" -ge 14 ] && [ -n "$NCU" ]; then
  timeout -k 1 $(( LEFT - 1 )) "$NCU" --profile-from-start off --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed \
    --csv --print-units base --log-file "$OUT/ncu-int8-64.csv" \
    /tmp/int8cbin/cutlass_check --profile int8-fp16 cutlass 64 >"$OUT/ncu-int8-64.txt" 2>&1
  echo "ncu profile exit $? (+$(( $(date +%s) - T0 )) s)" >>"$OUT/steps.txt"
else echo "ncu profile skipped: $LEFT s left" >>"$OUT/steps.txt"; fi
