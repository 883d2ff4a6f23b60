#!/usr/bin/env bash
# Issue 30, helper "gguf": the own Llama-family decoder with GGML linears kept quantized (candle's
# MMVQ/MMQ) against bf16, and the per-layer decoder run, on one GPU call (<= 360 s, each step under a
# timeout, results packed after every step so a cut-off call returns what finished).
#   bash .s5/gguf-run/run.sh $OUT          (from the repository root)
# 1. HBM copy bandwidth (benchmarks/pytorch_decode.py --bandwidth): the floors' denominator;
# 2. llm_own_gguf.toml at batch 1: Llama-3.2-1B bf16, q8_0-bf16, q4k-bf16; SmolLM2-135M bf16, q8_0-bf16
#    (its q4k skipped: 576-wide rows);
# 3. llm_own_layers.toml: per layer, prefill and decode apart, both methods, SmolLM2's widths cut to 4 layers;
# 4. llm_own_gguf.toml at batch 8 (as far as its time goes);
# 5. ncu: the MMVQ launches (and their q8_1 quantize) of a Llama-3.2-1B q8_0 and q4k decode step's last two
#    layers and head: time and DRAM bytes, against the floor.
# Budget (s): bandwidth 20 + b1 120 + layers 85 + b8 55 + ncu 2 x 35 = 350 (+ up to 8 s of kill grace a runner step).
set -uo pipefail
OUT=${1:?usage: run.sh OUT}
D=.s5/gguf-run
W=/tmp/gguf-out
mkdir -p "$W"
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt bandwidth.txt ncu-q8_0.txt ncu-q4k.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) $*" | tee -a "$W/steps.txt"; }
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
unxz "$D/runner.xz" /tmp/gguf-runner || exit 9
# The experiment files, if main does not have them yet (their dataset paths are relative to experiments/).
for f in llm_own_gguf.toml llm_own_layers.toml; do [ -f "experiments/$f" ] || cp "$D/$f" experiments/; done
R=(/tmp/gguf-runner run --templates "$D/templates")
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
/tmp/gguf-runner --version >>"$W/gpu.txt" 2>&1
# Shortened protocol (the file's: warm-up 0.5 s, windows >= 1 s x 3, idle 2 + 2 s).
P=(--set protocol.warmup_s=0.3 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=0.75
   --set protocol.idle_settle_s=1.0 --set protocol.idle_baseline_s=1.0)
step "bandwidth"
timeout "${BW_S:-20}" python3 benchmarks/pytorch_decode.py --bandwidth >"$W/bandwidth.txt" 2>&1
echo "bandwidth exit $?" >>"$W/steps.txt"
step "runner llm_own_gguf b1"
timeout -k 8 -s INT "${B1_S:-120}" "${R[@]}" experiments/llm_own_gguf.toml --out "$W/run-b1" "${P[@]}" \
    --set 'matrix.batch_size=[1]' --set 'matrix.model=["llama-3.2-1b","smollm2-135m"]' >"$W/run-b1.log" 2>&1
echo "runner b1 exit $?" >>"$W/steps.txt"
step "runner llm_own_layers"
timeout -k 8 -s INT "${LAYERS_S:-85}" "${R[@]}" experiments/llm_own_layers.toml --out "$W/run-layers" \
    >"$W/run-layers.log" 2>&1
echo "runner layers exit $?" >>"$W/steps.txt"
step "runner llm_own_gguf b8"
timeout -k 8 -s INT "${B8_S:-55}" "${R[@]}" experiments/llm_own_gguf.toml --out "$W/run-b8" "${P[@]}" \
    --set 'matrix.batch_size=[8]' --set 'matrix.model=["llama-3.2-1b","smollm2-135m"]' >"$W/run-b8.log" 2>&1
echo "runner b8 exit $?" >>"$W/steps.txt"
# The last 2 layers' and the head's MMVQ launches of the first Llama-3.2-1B decode step (each linear is a
# q8_1 quantize kernel + the MMVQ kernel: 16 x 7 + 1 = 113 pairs a step; skip 14 layers = 196 launches,
# profile 30), DRAM-cold (ncu flushes caches between kernels by default): time and DRAM bytes read,
# against the floor. --kill yes ends the runner once they are profiled.
for q in q8_0 q4k; do
    step "ncu $q"
    timeout -k 5 "${NCU_S:-35}" ncu --kill yes --kernel-name regex:mmvq_gguf --launch-skip 196 --launch-count 30 \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv \
        "${R[@]}" experiments/llm_own_gguf.toml --out "$W/run-ncu-$q" "${P[@]}" \
        --set 'matrix.batch_size=[1]' --set 'matrix.model=["llama-3.2-1b"]' --set "matrix.precision=[\"$q-bf16\"]" \
        >"$W/ncu-$q.txt" 2>&1
    echo "ncu $q exit $?" >>"$W/steps.txt"
done
step done
