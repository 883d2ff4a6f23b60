#!/usr/bin/env bash
# Issue 30, helper "decode", session 9 (written for call 2, which was refused; kept for the next session, edited at 23:55
# to the landed names: the new kernels are decode_kernels = "gemv-cluster"), part decode-check (limit 140 s): decode_check from branch decode9
# (commit in BUILT; decode_check.xz here) against main's (.s10/bin/decode_check.xz, the code before this branch):
#   checks.tar.gz  four check processes side by side, each line printed as it finishes:
#                  fold.txt        decode_check fold-kernels: decode_attention_cluster (new) against
#                                  plain_rope_kv_write + plain_decode_attention, f32/f16/bf16 b1/b3/b8, 7 shapes,
#                                  lengths 1..640, NaN to its sequence, graph replay = eager; decode_attention_rope
#                                  (old, kept) bf16 b1 + graph; argmax_rows_f32 against candle's; gemv_fold/gemv_split
#                  dec_fold.txt    decode_check decoder gemv-cluster (the cluster attention, gemv_long o and down)
#                  dec_pdl.txt     decode_check decoder gemv-pdl   (unchanged: a control)
#                  dec_fused.txt   decode_check decoder fused      (unchanged: a control)
#                                  each: 64 identical greedy fp32 steps against the plain decoder, bf16 bounded,
#                                  graph = eager
#   timing.txt     alone: new decode_check ncu-step llama-3.2-1b gemv-fold none (the fold step's ms over 5 x 64
#                  replays, each GEMV alone, each attention kernel alone), new decode_check steps llama-3.2-1b 1
#                  (fused, gemv-pdl, gemv-fold steps, alternated within), then main's ncu-step (the old fold step
#                  and GEMVs on the same machine; its first process pays the PTX JIT); this call's copy
#                  bandwidth (benchmarks/pytorch_decode.py --bandwidth) before it, for the floor
#   bash .s10/decode-check/run.sh $OUT        (from the repository root; carry .s10/decode-check and .s10/bin)
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s10/decode-check
W=/tmp/s10-decode-check
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-140}
pack() {
    for f in steps.txt timing.txt summary.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    tar -C "$W" -czf "$OUT/checks.tar.gz" --exclude=new_dc --exclude=old_dc . 2>/dev/null
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) - 2 )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >>"$W/steps.txt" 2>&1
cat "$D/BUILT" >>"$W/steps.txt" 2>/dev/null
cat .s10/bin/BUILT >>"$W/steps.txt" 2>/dev/null
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
step unxz
unxz "$D/decode_check.xz" "$W/new_dc" || { echo "unxz new failed" >>"$W/steps.txt"; exit 9; }
unxz .s10/bin/decode_check.xz "$W/old_dc" || echo "unxz old (main's) failed: no old timings" >>"$W/steps.txt"
NEW="$W/new_dc"; OLD="$W/old_dc"

# Keep ~36 s for the new binary's timings and the bandwidth, and ~26 s more for main's binary only if it is here.
R=38; [ -x "$OLD" ] && R=64
T=$(( $(left) - R )); [ "$T" -gt 70 ] && T=70
step "checks side by side (timeout $T s each)"
timeout -s KILL "$T" "$NEW" fold-kernels >"$W/fold.txt" 2>&1 & P1=$!
timeout -s KILL "$T" "$NEW" decoder gemv-cluster >"$W/dec_fold.txt" 2>&1 & P2=$!
timeout -s KILL "$T" "$NEW" decoder gemv-pdl >"$W/dec_pdl.txt" 2>&1 & P3=$!
timeout -s KILL "$T" "$NEW" decoder fused >"$W/dec_fused.txt" 2>&1 & P4=$!
for p in $P1 $P2 $P3 $P4; do wait "$p"; echo "pid $p exit $?" >>"$W/steps.txt"; done
{
    for f in fold dec_fold dec_pdl dec_fused; do
        echo "$f: $(grep -c ',PASS' "$W/$f.txt") PASS, $(grep -c -E 'FAIL|error' "$W/$f.txt") FAIL/error; $(grep -E '_checks,' "$W/$f.txt" | tr '\n' ' ')"
    done
    grep -h -E 'FAIL|error' "$W"/fold.txt "$W"/dec_*.txt | head -20
} >"$W/summary.txt"
cat "$W/summary.txt"

# Alone, one at a time, new before old each time (the same machine minutes apart).
timed() {  # timed NAME BINARY CAP ARGS...
    local name=$1 b=$2 cap=$3 t; shift 3
    [ -x "$b" ] || return
    t=$(left); [ "$t" -gt "$cap" ] && t=$cap
    [ "$t" -lt 5 ] && { echo "skipped $name: no time left" >>"$W/steps.txt"; return; }
    step "$name: $* (timeout $t s)"
    echo "## $name $*" >>"$W/timing.txt"
    timeout -s KILL "$t" "$b" "$@" >>"$W/timing.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
}
# On a fresh machine each binary's first process JIT-compiles its PTX (call 1: > 25 s); the checks above
# did it for the new binary's modules, main's (old) binary pays it in its own run, last.
timed new "$NEW" 12 ncu-step llama-3.2-1b gemv-cluster none
timed new "$NEW" 10 ncu-step llama-3.2-1b gemv-fold none
timed new "$NEW" 14 steps llama-3.2-1b 1
T=$(left); [ "$T" -gt 10 ] && T=10
if [ "$T" -ge 5 ]; then
    step "bandwidth (timeout $T s)"
    timeout -k 2 "$T" python3 benchmarks/pytorch_decode.py --bandwidth >>"$W/timing.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
fi
timed old "$OLD" 40 ncu-step llama-3.2-1b gemv-fold none
step done
grep -h -E '^(ncu_step|ncu_attention|step,|## |pytorch,kind=bandwidth)' "$W/timing.txt" 2>/dev/null
grep -h -E 'down|o\+res' "$W/timing.txt" 2>/dev/null | head -4
exit 0
