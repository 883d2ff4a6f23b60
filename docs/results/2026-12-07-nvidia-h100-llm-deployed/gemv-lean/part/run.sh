#!/usr/bin/env bash
# Issue 30, helper "decode", session 10, part decode-check10 (limit 80 s): decode_check from branch decode10 (commit in
# BUILT; decode_check.xz here), decode_kernels = "gemv-lean" (gemv-cluster + gemv_fold with a lane's loads batched for
# Q|K|V and gate|up + the tail after the lm_head in one launch, decode.cu's logits_pick):
#   checks.tar.gz  three check processes side by side (session 9's gemv-cluster checks passed on the H100 at 01:35-01:49
#                  and are not repeated), each line printed as it finishes:
#                  lean.txt      decode_check lean-kernels: gemv_fold BATCH vs gemv_fold (bit-identical) and vs the plain
#                                GEMV (+ SwiGLU), 4 shapes, f32/f16/bf16, b1/b3/b8, plain + programmatic launches, NaN to
#                                its row; logits_pick vs the cast + argmax rule + position add (ties, NaN, all-NaN row,
#                                scratch reset, no-pick mode), graph replay = eager
#                  dec_lean.txt  decode_check decoder gemv-lean: 64 identical fp32 greedy steps vs the plain decoder
#                                (llama/qwen2 tiny, SmolLM2), bf16 within 5 %, the step's graph = eager
#                  fixed.txt     decode_check lean-decoder: the fixed step (pick + position in logits_pick) vs the same
#                                model's step() + host greedy, 32 steps, fp32 and bf16: identical logits and tokens
#   timing.txt     alone, in order: decode_check steps llama-3.2-1b 1 gemv-cluster gemv-lean (the step's
#                  graph, ways alternated), this call's copy bandwidth (benchmarks/pytorch_decode.py --bandwidth),
#                  decode_check ncu-step llama-3.2-1b gemv-lean none (the step's ms, each GEMV variant alone incl.
#                  batched fold and the lm_head cuBLAS vs fold, each attention kernel alone)
#   bash .s10/decode-check10/run.sh $OUT        (from the repository root)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=$(cd "$(dirname "$0")" && pwd)
W=/tmp/s10-decode-check10
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-80}
pack() {
    for f in steps.txt timing.txt summary.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    tar -C "$W" -czf "$OUT/checks.tar.gz" --exclude=dc . 2>/dev/null
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) - 3 )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,clocks.mem \
    --format=csv >>"$W/steps.txt" 2>&1
cat "$D/BUILT" >>"$W/steps.txt" 2>/dev/null
step unxz
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$D/decode_check.xz" "$W/dc" && chmod +x "$W/dc" || { echo "unxz failed" >>"$W/steps.txt"; exit 9; }
DC="$W/dc"

# Checks first (the first process of each binary JIT-compiles its PTX on a fresh machine: inside these caps).
# Keep ~36 s for the timings and the bandwidth.
T=$(( $(left) - 36 )); [ "$T" -gt 45 ] && T=45
step "checks side by side (timeout $T s each)"
timeout -s KILL "$T" "$DC" lean-kernels >"$W/lean.txt" 2>&1 & P1=$!
timeout -s KILL "$T" "$DC" decoder gemv-lean >"$W/dec_lean.txt" 2>&1 & P2=$!
timeout -s KILL "$T" "$DC" lean-decoder >"$W/fixed.txt" 2>&1 & P3=$!
for p in $P1 $P2 $P3; do wait "$p"; echo "pid $p exit $?" >>"$W/steps.txt"; done
{
    for f in lean dec_lean fixed; do
        echo "$f: $(grep -c ',PASS' "$W/$f.txt") PASS, $(grep -c -E 'FAIL|error' "$W/$f.txt") FAIL/error; $(grep -E '_checks,' "$W/$f.txt" | tr '\n' ' ')"
    done
    grep -h -E 'FAIL|error' "$W"/lean.txt "$W"/dec_lean.txt "$W"/fixed.txt | head -20
} >"$W/summary.txt"
cat "$W/summary.txt"

timed() {  # timed CAP ARGS...
    local cap=$1 t; shift
    t=$(left); [ "$t" -gt "$cap" ] && t=$cap
    [ "$t" -lt 5 ] && { echo "skipped $*: no time left" >>"$W/steps.txt"; return; }
    step "$* (timeout $t s)"
    echo "## $*" >>"$W/timing.txt"
    timeout -s KILL "$t" "$DC" "$@" >>"$W/timing.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
}
timed 18 steps llama-3.2-1b 1 gemv-cluster gemv-lean
T=$(left); [ "$T" -gt 8 ] && T=8
if [ "$T" -ge 5 ]; then
    step "bandwidth (timeout $T s)"
    timeout -k 2 "$T" python3 benchmarks/pytorch_decode.py --bandwidth >>"$W/timing.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
fi
timed 14 ncu-step llama-3.2-1b gemv-lean none
step done
grep -h -E '^(ncu_step|ncu_gemv|ncu_attention|step,|## |pytorch,kind=bandwidth)' "$W/timing.txt" 2>/dev/null
exit 0
