#!/usr/bin/env bash
# Issue 30, helper "decode", session 6, part decode-torch (limit 300 s; no binary): PyTorch's compiled
# static-cache decode step (benchmarks/pytorch_decode.py, torch.compile mode="reduce-overhead",
# fullgraph=True) for SmolLM2-135M, Qwen2.5-0.5B and Llama-3.2-1B shapes, prompt 512, 128 new tokens,
# bf16, random weights; batch 1 (with the HBM copy bandwidth) in one process, batch 8 in a second.
# Each cell's JSON line is flushed when it is measured, so a cut-off process keeps the cells before.
# Writes /tmp/s6-torch/torch.jsonl (kept on the warm machine: decode-run and prefill-run read it)
# and copies it to $OUT.
#   bash .s6/decode-torch/torch.sh $OUT        (from the repository root; carry .s6/decode-torch)
set -uo pipefail
OUT=${1:?usage: torch.sh OUT}
W=/tmp/s6-torch
mkdir -p "$W"
: >"$W/torch.jsonl"
T0=$(date +%s)
LIMIT=${LIMIT_S:-292}
pack() { for f in steps.txt gpu.txt torch.txt torch.jsonl; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
run_for() {
    local t=$1; shift
    local left=$(( LIMIT - ($(date +%s) - T0) ))
    [ "$left" -lt "$t" ] && t=$left
    if [ "$t" -lt 5 ]; then echo "skipped: no time left" >>"$W/steps.txt"; return; fi
    timeout -s KILL "$t" "$@"
    echo "exit $? (timeout $t s)" >>"$W/steps.txt"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
TORCH=(python3 benchmarks/pytorch_decode.py --ways compiled --window-s 1.0 --out "$W/torch.jsonl")
step "PyTorch compiled, batch 1 (+ bandwidth)"
run_for 130 "${TORCH[@]}" --bandwidth smollm2-135m:1 qwen2.5-0.5b:1 llama-3.2-1b:1 >>"$W/torch.txt" 2>&1
step "PyTorch compiled, batch 8"
run_for 290 "${TORCH[@]}" llama-3.2-1b:8 smollm2-135m:8 qwen2.5-0.5b:8 >>"$W/torch.txt" 2>&1
step done
