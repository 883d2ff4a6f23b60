#!/usr/bin/env bash
# Helper "prefill", part prefill-check (limit 45 s): `decode_check prefill` from branch prefill (commit in
# BUILT): the flash prefill attention against its plain twin (presets' heads + head_dim 128 + tiny d16,
# b1/b8, lengths 1..512 and continuations, bf16/f16), NaN confined, graph replay = eager, timing of one
# layer's attention each way, the decoder with prefill_attention = "flash" against plain (logits, first
# tokens, 8 steps on, eager prefill ms each way), the flash fixed prefill captured = eager.
# Leaves /tmp/s6-prefill/check.txt for part prefill-run (same machine).
#   bash .s6/prefill-check/check.sh $OUT
set -uo pipefail
OUT=${1:?usage: check.sh OUT}
D=.s6/prefill-check
W=/tmp/s6-prefill
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
cat "$D/BUILT" >>"$OUT/gpu.txt"
echo "== $(date -u +%T) unxz" >"$OUT/steps.txt"
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$D/decode_check.xz" /tmp/prefill_check && chmod +x /tmp/prefill_check || exit 9
echo "== $(date -u +%T) decode_check prefill" >>"$OUT/steps.txt"
# Lines are written as they finish: a cut-off run still returns what it checked.
timeout -s KILL 40 /tmp/prefill_check prefill >"$OUT/prefill_check.txt" 2>&1
echo "decode_check prefill exit $? at $(date -u +%T)" >>"$OUT/steps.txt"
cp "$OUT/prefill_check.txt" "$W/check.txt"
