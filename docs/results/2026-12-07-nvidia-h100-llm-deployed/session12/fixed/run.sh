#!/usr/bin/env bash
# Session 11 (re-run in session 12 from main 0dc2b7c), part fixed (limit ~60 s): decode_check lean-decoder again, with both sides picking by logits_pick's rule
# (the first run, at 04:35 on an H100, failed at SmolLM2 bf16: the step() side picked with candle's CUDA argmax).
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
T0=$(date +%s); LIMIT=${LIMIT_S:-60}
source .s12/unpack.sh
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv >"$OUT/steps.txt" 2>&1
cat .s12/bin/BUILT >>"$OUT/steps.txt"
unpack decode_check & unpack runner & wait
T=$(( LIMIT - ($(date +%s) - T0) - 3 ))
echo "== $(date -u +%T) lean-decoder (timeout $T s)" >>"$OUT/steps.txt"
timeout -s KILL "$T" /tmp/s12/decode_check lean-decoder >"$OUT/fixed.txt" 2>&1
echo "exit $?" >>"$OUT/steps.txt"
cat "$OUT/fixed.txt"
