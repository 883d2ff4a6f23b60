#!/usr/bin/env bash
# s5 issue 31: fused_embeddings check + flagship subset with the key off/on (binaries from b73ac06).
set -uo pipefail
FINAL=${1:?}; W=/tmp/c31; mkdir -p $W /tmp/cb
pack() { tar -C $W -czf $FINAL/c31.tar.gz --exclude='*.html' --exclude=charts . 2>/dev/null; for f in steps.txt cutlass_check.txt gpu.txt; do [ -f $W/$f ] && cp $W/$f $FINAL/; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) $*" | tee -a $W/steps.txt; }
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >>$W/gpu.txt 2>&1; date -u >>$W/gpu.txt
if [ -f .s5/cc/cutlass_check.xz ]; then
  unxz .s5/cc/cutlass_check.xz /tmp/cb/cutlass_check
  step "cutlass_check --quick"
  timeout ${CHECK_S:-100} /tmp/cb/cutlass_check --quick >$W/cutlass_check.txt 2>&1; echo "cutlass_check exit $?" >>$W/steps.txt
fi
if [ -f .s5/cr/runner.xz ]; then
  unxz .s5/cr/runner.xz /tmp/cb/runner; /tmp/cb/runner --version >>$W/gpu.txt
  P=(--set 'matrix.batch_size=[16,64]' --set protocol.warmup_s=1.0 --set protocol.min_window_s=1.0 --set protocol.repeats=3
     --set protocol.idle_baseline_s=3.0 --set protocol.idle_settle_s=2.0 --set device.gemm_library=cutlass
     --set 'matrix.precision=["fp16","int8-fp16"]' --set 'matrix.quantize=["blocks:0-5"]')
  for round in ${ROUNDS:-1}; do for fe in false true; do
    step "runner fused_embeddings=$fe round $round"
    timeout -k 5 -s INT ${RUN_S:-45} /tmp/cb/runner experiments/quantization_sweep.toml "${P[@]}" --set device.fused_embeddings=$fe \
      --out $W/run-fe-$fe-$round >$W/run-fe-$fe-$round.log 2>&1; echo "runner exit $?" >>$W/steps.txt
  done; done
  step PyTorch
  timeout ${TORCH_S:-80} python3 benchmarks/pytorch_reference.py $W/torch-1.jsonl --batch-sizes 16,64 --precisions "" \
    --compile-precisions fp16 --compile-modes reduce-overhead --window-s 1.0 >$W/torch-1.log 2>&1; echo "torch exit $?" >>$W/steps.txt
fi
step done
