#!/usr/bin/env bash
# Issue 30, helper "decode", session 8, call 2, part decode-check (limit 60 s): decode_check from branch decode8
# (commit in BUILT), on the GPU. Two check processes side by side (each line printed as it finishes), then two
# timing runs alone:
#   fold_check.txt    decode_check fold-kernels: gemv-fold's kernels against their plain twins: gemv_fold
#                     (RMSNorm at the end, SwiGLU out) f32/f16/bf16 b1/b3/b8 every preset shape, plain and
#                     programmatic, NaN to its row, two calls bit-identical; decode_attention_rope (rotary + KV
#                     write folded into the attention) against plain_rope_kv_write + plain_decode_attention
#                     (context and caches), lengths 1..640, bias, qk_norm, d16/32/64/128, NaN to its sequence,
#                     graph replay = eager
#   fold_decoder.txt  decode_check decoder gemv-fold: the decoder against the plain one (fp32 64 greedy steps
#                     identical, bf16 16 bounded; llama/qwen2 tiny, SmolLM2), graph = eager (SmolLM2)
#   fold_step.txt     decode_check ncu-step llama-3.2-1b gemv-fold none: the step's ms (graph), the GEMV variants
#   pdl_step.txt      decode_check ncu-step llama-3.2-1b gemv-pdl none: the same for gemv-pdl, same machine
#   bash .s8/decode-check/check.sh $OUT        (from the repository root; carry .s8/decode-check)
set -uo pipefail
OUT=${1:?usage: check.sh OUT}
D=.s8/decode-check
W=/tmp/s8-decode-check
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-57}
FILES="steps.txt gpu.txt fold_check.txt fold_decoder.txt fold_step.txt pdl_step.txt"
pack() { for f in $FILES; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/decode_check.xz" /tmp/s8-decode_check && chmod +x /tmp/s8-decode_check || exit 9
DC=/tmp/s8-decode_check
T=$(( $(left) - 22 )); [ "$T" -gt 34 ] && T=34
step "checks side by side (timeout $T s each)"
timeout -s KILL "$T" $DC fold-kernels >"$W/fold_check.txt" 2>&1 &
P1=$!
timeout -s KILL "$T" $DC decoder gemv-fold >"$W/fold_decoder.txt" 2>&1 &
P2=$!
for p in $P1 $P2; do wait "$p"; echo "pid $p exit $?" >>"$W/steps.txt"; done
T=$(( ($(left) - 1) / 2 )); [ "$T" -gt 15 ] && T=15
step "ncu-step llama-3.2-1b gemv-fold none, alone (timeout $T s)"
[ "$T" -ge 5 ] && { timeout -s KILL "$T" $DC ncu-step llama-3.2-1b gemv-fold none >"$W/fold_step.txt" 2>&1; echo "exit $?" >>"$W/steps.txt"; }
T=$(( $(left) - 1 )); [ "$T" -gt 15 ] && T=15
step "ncu-step llama-3.2-1b gemv-pdl none, alone (timeout $T s)"
[ "$T" -ge 5 ] && { timeout -s KILL "$T" $DC ncu-step llama-3.2-1b gemv-pdl none >"$W/pdl_step.txt" 2>&1; echo "exit $?" >>"$W/steps.txt"; }
step done
grep -h -c PASS "$W"/fold_check.txt "$W"/fold_decoder.txt 2>/dev/null | paste -sd' ' | sed 's/^/PASS lines per file: /'
grep -h -E "FAIL|error" "$W"/fold_check.txt "$W"/fold_decoder.txt 2>/dev/null | head -20
grep -h ncu_step "$W"/fold_step.txt "$W"/pdl_step.txt 2>/dev/null
exit 0
