#!/usr/bin/env bash
# Issue 30, helper "decode", session 7, part decode-check (limit 75 s): decode_check from branch decode7
# (commit in BUILT), on the GPU. Four check processes side by side (each line printed as it finishes),
# then the profile alone:
#   bulk_check.txt     decode_check bulk-kernels: the bulk-copy GEMV (gemv.cu's gemv_bulk) against its plain
#                      twin, f32/f16/bf16, b1/b3/b8, every preset shape, plain and programmatic launches; NaN
#                      to its row; two calls bit-identical; its difference to the loads' GEMV (info)
#   wide_check.txt     decode_check wide: the attention's wide merge against plain and against the narrow
#                      merge (bit-identical expected), NaN to its sequence, graph replay = eager
#   bulk_decoder.txt   decode_check decoder gemv-bulk: the decoder against the plain one (fp32 64 greedy
#                      steps identical, bf16 16 bounded; llama/qwen2 tiny, SmolLM2), graph = eager (SmolLM2)
#   pdl_decoder.txt    decode_check decoder gemv-pdl: the same for gemv-pdl (session 6's owed check)
#   profile.txt        decode_check profile llama-3.2-1b b1: each launch alone in a graph (the bulk GEMVs and
#                      the wide attention beside gemv-pdl's), each way's layer as a chain (fused, gemv,
#                      gemv-pdl, gemv-bulk)
#   bash .s7/decode-check/check.sh $OUT        (from the repository root; carry .s7/decode-check)
set -uo pipefail
OUT=${1:?usage: check.sh OUT}
D=.s7/decode-check
W=/tmp/s7-decode-check
rm -rf "$W"
mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-72}
FILES="steps.txt gpu.txt bulk_check.txt wide_check.txt bulk_decoder.txt pdl_decoder.txt profile.txt"
pack() { for f in $FILES; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/decode_check.xz" /tmp/s7-decode_check && chmod +x /tmp/s7-decode_check || exit 9
# The checks side by side, at most 52 s (the profile needs ~10-15 s alone after them: session 6's
# b1 + b8 took 10 s).
T=$(( $(left) - 18 )); [ "$T" -gt 52 ] && T=52
step "checks side by side (timeout $T s each)"
timeout -s KILL "$T" /tmp/s7-decode_check bulk-kernels >"$W/bulk_check.txt" 2>&1 &
P1=$!
timeout -s KILL "$T" /tmp/s7-decode_check wide >"$W/wide_check.txt" 2>&1 &
P2=$!
timeout -s KILL "$T" /tmp/s7-decode_check decoder gemv-bulk >"$W/bulk_decoder.txt" 2>&1 &
P3=$!
timeout -s KILL "$T" /tmp/s7-decode_check decoder gemv-pdl >"$W/pdl_decoder.txt" 2>&1 &
P4=$!
for p in $P1 $P2 $P3 $P4; do wait "$p"; echo "pid $p exit $?" >>"$W/steps.txt"; done
T=$(( $(left) - 1 )); [ "$T" -gt 30 ] && T=30
step "decode_check profile llama-3.2-1b b1 (timeout $T s)"
if [ "$T" -ge 5 ]; then
    timeout -s KILL "$T" /tmp/s7-decode_check profile llama-3.2-1b b1 >"$W/profile.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
fi
step done
grep -h -c PASS "$W"/*_check.txt "$W"/*_decoder.txt 2>/dev/null | paste -sd' ' | sed 's/^/PASS lines per file: /'
grep -h FAIL "$W"/*_check.txt "$W"/*_decoder.txt 2>/dev/null | head -20
exit 0
