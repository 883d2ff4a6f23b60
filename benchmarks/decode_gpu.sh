#!/usr/bin/env bash
# Issue 30's GPU call: the own decoder against PyTorch's compiled decode step on one GPU, each step under
# a timeout and packed as it goes (a call cut short still brings back what finished).
#   1. decode_check (own decoder vs candle-transformers, graph vs eager), if BIN_DIR has it;
#   2. HBM copy bandwidth (the memory floor's denominator) and PyTorch's static-cache decode under
#      torch.compile(mode="reduce-overhead", fullgraph=True), time and NVML energy
#      (benchmarks/pytorch_decode.py; its warm-up compiles for 45-60 s per model and batch on an H100);
#   3. the runner on EXPERIMENT (the own decoder's cells on the same shapes).
#
#   bash benchmarks/decode_gpu.sh OUT BIN_DIR [EXPERIMENT]      # BIN_DIR: runner.xz [, decode_check.xz]
#
# Environment: CELLS (PyTorch's preset:batch list, default "smollm2-135m:1,8 llama-3.2-1b:1,8"),
# CHECK_S, TORCH_S, RUN_S (timeouts), WINDOW_S (PyTorch's window).
set -uo pipefail
cd "$(dirname "$0")/.."
FINAL=${1:?usage: decode_gpu.sh OUT BIN_DIR [EXPERIMENT]}
BIN=${2:?usage: decode_gpu.sh OUT BIN_DIR [EXPERIMENT]}
EXPERIMENT=${3:-experiments/llm_own.toml}
W=/tmp/decode-gpu-out
mkdir -p "$W"
pack() {
    tar -C "$W" -czf "$FINAL/results.tar.gz" --exclude='charts' --exclude='*.html' . 2>/dev/null
    for f in steps.txt gpu.txt decode_check.txt torch.txt runner.log; do [ -f "$W/$f" ] && cp "$W/$f" "$FINAL/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) $*" | tee -a "$W/steps.txt"; }
# xz without the xz tool: the GPU machine may lack it.
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
unxz "$BIN/runner.xz" /tmp/runner || exit 9
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
if [ -f "$BIN/decode_check.xz" ]; then
    unxz "$BIN/decode_check.xz" /tmp/decode_check || exit 9
    step decode_check
    timeout -s KILL "${CHECK_S:-50}" /tmp/decode_check smollm2-135m >"$W/decode_check.txt" 2>&1
    echo "decode_check exit $?" >>"$W/steps.txt"
fi
step "PyTorch compiled"
# shellcheck disable=SC2086
timeout "${TORCH_S:-240}" python3 benchmarks/pytorch_decode.py --bandwidth --ways compiled \
    --window-s "${WINDOW_S:-1.5}" --out "$W/torch.jsonl" ${CELLS:-smollm2-135m:1,8 llama-3.2-1b:1,8} \
    >"$W/torch.txt" 2>&1
echo "torch exit $?" >>"$W/steps.txt"
step "runner $EXPERIMENT"
timeout -s INT "${RUN_S:-120}" /tmp/runner "$EXPERIMENT" --out "$W/run" >"$W/runner.log" 2>&1
echo "runner exit $?" >>"$W/steps.txt"
step done
