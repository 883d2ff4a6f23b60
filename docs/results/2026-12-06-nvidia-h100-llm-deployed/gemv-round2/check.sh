#!/usr/bin/env bash
# Issue 30, helper "decode", round 2, part A (limit 60 s): the decode GEMV's GPU checks and the profile.
#   bash .s5/decode-check2/check.sh $OUT       (from the repository root; carry .s5/decode-check2)
# 1. decode_check gemv: each decode GEMV (RMSNorm / SwiGLU prologue, bias, residual epilogue) against
#    its plain twin (f32/f16/bf16, b1/b3/b8, four shapes, NaN row, repeatability); the decoder with
#    decode_kernels = "gemv" against the plain one (fp32 64 greedy steps, bf16 16) for the tiny
#    llama/mistral/qwen2/qwen3 configs and SmolLM2; its step as a CUDA graph against eager (nodes).
# 2. decode_check profile: each launch of a layer step alone in a CUDA graph, fused and gemv paths.
set -uo pipefail
OUT=${1:?usage: check.sh OUT}
D=.s5/decode-check2
W=/tmp/decode-check2
mkdir -p "$W"
T0=$(date +%s)
pack() { for f in steps.txt gpu.txt gemv_check.txt profile.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$D/BUILT" >>"$W/gpu.txt" 2>/dev/null
step unxz
unxz "$D/decode_check.xz" /tmp/decode_check || exit 9
step "decode_check gemv"
timeout -s KILL "${GEMV_S:-40}" /tmp/decode_check gemv >"$W/gemv_check.txt" 2>&1
echo "decode_check gemv exit $?" >>"$W/steps.txt"
step "decode_check profile"
timeout -s KILL "${PROFILE_S:-15}" /tmp/decode_check profile >"$W/profile.txt" 2>&1
echo "profile exit $?" >>"$W/steps.txt"
step done
