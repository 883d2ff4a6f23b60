#!/usr/bin/env bash
# Part layers-prof (helper layers, session 8, issue 30's decode-isolated Σ), limit 90 s.
# examples/layers_timeline (branch layers8): the own decoder as experiments/llm_own_layers.toml's
# model (SmolLM2-135M widths, 4 layers, bf16, b1, position 576 of a 640-position cache); the whole
# decode step, the per-layer head unit, the prefixes and stand-ins captured as CUDA graphs; their
# kernel nodes listed, then timed (time.txt); then each kernel node of one replay of step, head,
# prefix6, flush+head and block3+head under ncu (ncu.csv: gpu__time_duration per kernel node,
# --cache-control none --clock-control none, so each kernel sees the L2 its predecessor left).
set -uo pipefail
OUT=${1:?usage: go.sh OUT}
D=.s8/layers-prof
W=/tmp/s8-layers-prof
T0=$(date +%s)
rm -rf "$W"; mkdir -p "$W"
pack() {
  for f in gpu.txt steps.txt time.txt ncu.csv ncu-gemm.csv ncu-app.txt; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
  [ -f "$W/prof.ncu-rep" ] && tar -C "$W" -czf "$OUT/ncu-rep.tar.gz" prof.ncu-rep 2>/dev/null
  true
}
trap pack EXIT
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm,memory.total --format=csv >"$W/gpu.txt" 2>&1
date -u >>"$W/gpu.txt"
timeout 30 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$D/layers_timeline.xz" "$W/lt" && chmod +x "$W/lt" || { echo "unpack failed" >>"$W/steps.txt"; exit 9; }
echo "unpacked at $(( $(date +%s) - T0 )) s" >>"$W/steps.txt"
timeout -k 3 35 "$W/lt" time >"$W/time.txt" 2>&1
echo "time exit $? at $(( $(date +%s) - T0 )) s" >>"$W/steps.txt"
pack
# ncu A: every kernel node's own duration and SM clock, the first 420 kernels after cuProfilerStart
# (the whole step's, then the head unit's, then the start of prefix6), one pass.
LEFT=$(( 60 - ($(date +%s) - T0) ))
echo "ncu A with ${LEFT} s left" >>"$W/steps.txt"
timeout -k 3 "$LEFT" ncu --profile-from-start off --graph-profiling node --cache-control none \
  --clock-control none --launch-count 420 --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second \
  --csv --page raw --print-units base --log-file "$W/ncu.csv" --export "$W/prof" --force-overwrite \
  "$W/lt" ncu >"$W/ncu-app.txt" 2>&1
echo "ncu A exit $? at $(( $(date +%s) - T0 )) s" >>"$W/steps.txt"
pack
# ncu B: the GEMM/GEMV kernels only (lm_head's among them) in all five graphs, with their DRAM bytes
# and L2 hit rate (may take several passes; the L2 not flushed between kernels).
LEFT=$(( 87 - ($(date +%s) - T0) ))
echo "ncu B with ${LEFT} s left" >>"$W/steps.txt"
timeout -k 2 "$LEFT" ncu --profile-from-start off --graph-profiling node --cache-control none \
  --clock-control none -k "regex:gemm|gemv|Gemm|Gemv" \
  --metrics gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sector_hit_rate.pct,sm__cycles_elapsed.avg.per_second \
  --csv --page raw --print-units base --log-file "$W/ncu-gemm.csv" "$W/lt" ncu >/dev/null 2>&1
echo "ncu B exit $? at $(( $(date +%s) - T0 )) s" >>"$W/steps.txt"
