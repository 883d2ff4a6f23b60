#!/usr/bin/env bash
# Issue 30, the fused decode kernels' GPU call (helper "decode"): the checks, then the ratio benchmark,
# PyTorch's compiled static-cache step and the runner's own decoder (fused and plain decode kernels)
# alternating, each step under a timeout and packed as it goes (a call cut short keeps what finished).
#   bash .s4/decode/go.sh $OUT          (from the repository root; ~300 s in all)
# 1. decode_check fused: every fused kernel against its plain twin (f32/f16/bf16, b1/b8, NaN), the fused
#    decoder against the plain one (fp32 64 greedy steps, bf16 16), graph replay against eager;
# 2. HBM copy bandwidth + PyTorch compiled, SmolLM2-135M b1 and b8;
# 3. runner experiments/llm_own_fused.toml, SmolLM2: fused b1, b8, then plain b1, b8 (as time allows);
# 4. PyTorch compiled, Llama-3.2-1B b1;
# 5. runner, Llama-3.2-1B: fused b1, b8, then plain b1;
# 6. decode_check profile: each launch of a fused layer step alone in a CUDA graph (per-kernel profile);
# 7. ratios.csv (benchmarks/decode_ratios.py): time and energy against PyTorch, Llama b1 against its floor.
set -uo pipefail
OUT=${1:?usage: go.sh OUT}
D=${D:-.s5}
W=/tmp/decode-out
mkdir -p "$W"
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt decode_check.txt torch.txt profile.txt ratios.csv ratios.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) $*" | tee -a "$W/steps.txt"; }
# A step whose timeout is set to 0 is skipped (GNU timeout would read 0 as "no limit").
for v in CHECK_S TORCH1_S RUN1_S TORCH2_S RUN2_S PROFILE_S; do
    if [ "${!v:-1}" = 0 ]; then printf -v "$v" '%s' 0.01; fi
done
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
[ -f "$D/rn/runner.xz" ] && { unxz "$D/rn/runner.xz" /tmp/runner || exit 9; }
[ -f "$D/dc/decode_check.xz" ] && { unxz "$D/dc/decode_check.xz" /tmp/decode_check || exit 9; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
/tmp/runner --version >>"$W/gpu.txt" 2>&1
# Shortened protocol (the file's: warm-up 0.5 s, windows >= 1 s x 3, idle 2 + 2 s).
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
step "decode_check fused"
timeout -s KILL "${CHECK_S:-35}" /tmp/decode_check fused >"$W/decode_check.txt" 2>&1
echo "decode_check exit $?" >>"$W/steps.txt"
step "PyTorch compiled smollm2-135m:1,8"
timeout "${TORCH1_S:-120}" python3 benchmarks/pytorch_decode.py --bandwidth --ways compiled --window-s 1.0 \
    --out "$W/torch.jsonl" smollm2-135m:1,8 >"$W/torch.txt" 2>&1
echo "torch exit $?" >>"$W/steps.txt"
step "runner smollm2-135m fused, plain"
timeout -k 8 -s INT "${RUN1_S:-45}" /tmp/runner experiments/llm_own_fused.toml --out "$W/run-smollm2" "${P[@]}" \
    --set 'matrix.model=["smollm2-135m-fused","smollm2-135m"]' >"$W/run-smollm2.log" 2>&1
echo "runner exit $?" >>"$W/steps.txt"
step "PyTorch compiled llama-3.2-1b:1"
timeout "${TORCH2_S:-50}" python3 benchmarks/pytorch_decode.py --ways compiled --window-s 1.0 \
    --out "$W/torch.jsonl" llama-3.2-1b:1 >>"$W/torch.txt" 2>&1
echo "torch exit $?" >>"$W/steps.txt"
step "runner llama-3.2-1b fused, plain"
timeout -k 8 -s INT "${RUN2_S:-35}" /tmp/runner experiments/llm_own_fused.toml --out "$W/run-llama" "${P[@]}" \
    --set 'matrix.model=["llama-3.2-1b-fused","llama-3.2-1b"]' >"$W/run-llama.log" 2>&1
echo "runner exit $?" >>"$W/steps.txt"
step "decode_check profile"
timeout -s KILL "${PROFILE_S:-15}" /tmp/decode_check profile >"$W/profile.txt" 2>&1
echo "profile exit $?" >>"$W/steps.txt"
step ratios
python3 benchmarks/decode_ratios.py "$W/torch.jsonl" "$W"/run-*/summary.csv --out "$W/ratios.csv" >"$W/ratios.txt" 2>&1
cat "$W/ratios.txt"
step done
