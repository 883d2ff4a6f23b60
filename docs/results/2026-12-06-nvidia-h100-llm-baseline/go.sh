#!/usr/bin/env bash
# Session 4, call B (issue 30 baseline): decode_check, PyTorch's compiled decode step (time + NVML
# energy) and HBM bandwidth, the own decoder's cells on the same shapes, the per-layer cell.
set -uo pipefail
D=.s4/callB
W=/tmp/callB; mkdir -p $W
pack() { tar -C $W -czf $OUT/results.tar.gz . 2>/dev/null; for f in steps.txt gpu.txt decode_check.txt torch.txt; do [ -f $W/$f ] && cp $W/$f $OUT/; done; }
trap pack EXIT
step() { pack; echo "== $(date -u +%T) $*" | tee -a $W/steps.txt; }
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
unxz $D/runner.xz /tmp/runner || exit 9
unxz $D/decode_check.xz /tmp/decode_check || exit 9
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm --format=csv > $W/gpu.txt 2>&1
step decode_check
timeout -s KILL ${CHECK_S:-50} /tmp/decode_check smollm2-135m > $W/decode_check.txt 2>&1; echo "decode_check exit $?" >> $W/steps.txt
step torch compiled
timeout ${TORCH_S:-140} python3 $D/pytorch_decode.py --bandwidth --ways compiled --window-s 1.5 --out $W/torch.jsonl smollm2-135m:1,8 llama-3.2-1b:1,8 > $W/torch.txt 2>&1; echo "torch exit $?" >> $W/steps.txt
step runner own
timeout -s INT ${RUN_S:-100} /tmp/runner $D/llm_own.toml --out $W/run-own > $W/run-own.log 2>&1; echo "runner own exit $?" >> $W/steps.txt
step runner layers
timeout -s INT ${LAYERS_S:-80} /tmp/runner $D/llm_layers.toml --out $W/run-layers > $W/run-layers.log 2>&1; echo "runner layers exit $?" >> $W/steps.txt
step torch plain
timeout ${PLAIN_S:-30} python3 $D/pytorch_decode.py --ways plain --window-s 1.0 --out $W/torch.jsonl smollm2-135m:1 >> $W/torch.txt 2>&1; echo "torch plain exit $?" >> $W/steps.txt
step done
