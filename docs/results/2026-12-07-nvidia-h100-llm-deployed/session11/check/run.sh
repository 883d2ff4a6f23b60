#!/usr/bin/env bash
# Session 11, part check (limit ~85 s; the second run of it: the first, on an H100, gave the five processes 35 s,
# too few for the first process's PTX JIT, and ran cutlass_check --pairs, which passed, and the timings): every GPU check of the code this session would land, on this machine
# (binaries from branch s11 = main + gemv-lean + device.pair_norms; commit in .s11/bin/BUILT):
#   five decode_check processes side by side (their PASS/FAIL lines; the first process of each binary JIT-compiles):
#     fold.txt      fold-kernels: gemv_fold / gemv_split / gemv_long / decode_attention_rope / decode_attention_cluster /
#                   argmax against the plain path (gemv-cluster's first H200 check)
#     dec_cluster   decoder gemv-cluster: 64 identical fp32 greedy steps vs the plain decoder, bf16 bound, graph = eager
#     lean.txt      lean-kernels: gemv_fold BATCH bit-identical to gemv_fold and vs the plain GEMV; logits_pick vs cast +
#                   argmax rule + position add; graph = eager
#     dec_lean      decoder gemv-lean
#     fixed.txt     lean-decoder: the fixed step (pick + position in logits_pick) vs step() + host greedy
#   then alone: cutlass_check --pairs (the pair norm kernels bit for bit against the kernels they replace; timed);
#   then alone: decode_check steps llama-3.2-1b 1 gemv-cluster gemv-lean, the copy bandwidth, ncu-step gemv-lean.
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
W=/tmp/s11-check; rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s); LIMIT=${LIMIT_S:-110}
source .s11/unpack.sh
pack() {
    for f in steps.txt timing.txt summary.txt pairs.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    tar -C "$W" -czf "$OUT/checks.tar.gz" . 2>/dev/null; true
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) - 3 )); }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,clocks.mem \
    --format=csv >>"$W/steps.txt" 2>&1
cat .s11/bin/BUILT >>"$W/steps.txt" 2>/dev/null
step unxz
unpack decode_check & unpack runner & wait
DC=/tmp/s11/decode_check; CC=/tmp/s11/cutlass_check
[ -x $DC ] || { echo "no decode_check" >>"$W/steps.txt"; exit 9; }
T=$(( $(left) - 24 )); [ "$T" -gt 75 ] && T=75
step "decode checks side by side (timeout $T s each)"
timeout -s KILL "$T" $DC fold-kernels >"$W/fold.txt" 2>&1 & P1=$!
timeout -s KILL "$T" $DC decoder gemv-cluster >"$W/dec_cluster.txt" 2>&1 & P2=$!
timeout -s KILL "$T" $DC lean-kernels >"$W/lean.txt" 2>&1 & P3=$!
timeout -s KILL "$T" $DC decoder gemv-lean >"$W/dec_lean.txt" 2>&1 & P4=$!
timeout -s KILL "$T" $DC lean-decoder >"$W/fixed.txt" 2>&1 & P5=$!
for p in $P1 $P2 $P3 $P4 $P5; do wait "$p"; echo "pid $p exit $?" >>"$W/steps.txt"; done
{
    for f in fold dec_cluster lean dec_lean fixed; do
        echo "$f: $(grep -c ',PASS' "$W/$f.txt") PASS, $(grep -c -E 'FAIL|error|panick' "$W/$f.txt") FAIL/error; $(grep -E '_checks,' "$W/$f.txt" | tr '\n' ' ')"
    done
    grep -h -E 'FAIL|error|panick' "$W"/fold.txt "$W"/dec_cluster.txt "$W"/lean.txt "$W"/dec_lean.txt "$W"/fixed.txt | head -20
} >"$W/summary.txt"
cat "$W/summary.txt"
T=$(left); [ "$T" -gt 20 ] && T=20
if [ "$T" -ge 8 ]; then
    step "steps llama-3.2-1b 1 gemv-cluster gemv-lean (timeout $T s)"
    timeout -s KILL "$T" $DC steps llama-3.2-1b 1 gemv-cluster gemv-lean >"$W/timing.txt" 2>&1
    echo "exit $?" >>"$W/steps.txt"
fi
step done
grep -h -E '^(ncu_step|step,|## |pytorch,kind=bandwidth)' "$W/timing.txt" 2>/dev/null | head -30
exit 0
