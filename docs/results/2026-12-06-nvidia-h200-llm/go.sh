#!/usr/bin/env bash
# Session 3's single GPU call: issue 27's evidence (experiments/llm_decode.toml, crate decoders),
# the own decoder's cells), and issue 32's powercap probe. Budget-bound: a shortened protocol.
set -o pipefail
G=.gpu3
T0=$(date +%s)
unxz() { xz -dc "$1" 2>/dev/null || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)" "$1"; }
for b in runner; do unxz $G/$b.xz > /tmp/$b && chmod +x /tmp/$b || exit 9; done
{ echo "# ls -la /sys/class/powercap/"; ls -la /sys/class/powercap/ 2>&1; echo "# names"; for d in /sys/class/powercap/*/; do echo "$d $(cat $d/name 2>&1) $(cat $d/energy_uj 2>&1 | head -c 40)"; done; echo "# id"; id; echo "# cpu"; grep -m1 "model name" /proc/cpuinfo; } > $OUT/powercap.txt 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,power.draw,power.limit,clocks.sm,clocks.max.sm,persistence_mode --format=csv > $OUT/gpu.txt 2>&1
echo "start $(date -u)" > $OUT/log.txt
P="--set protocol.warmup_s=0.5 --set protocol.stabilize_s=0.3 --set protocol.min_window_s=0.75 --set protocol.min_loops=2 --set protocol.idle_settle_s=2 --set protocol.idle_baseline_s=2"
timeout -s INT -k 25 ${CRATE_S:-160} /tmp/runner experiments/llm_decode.toml --out /tmp/llm_decode $P >> $OUT/log.txt 2>&1; echo "llm_decode rc=$? at $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
timeout -s INT -k 20 ${OWN_S:-60} /tmp/runner $G/llm_own.toml --out /tmp/llm_own $P >> $OUT/log.txt 2>&1; echo "llm_own rc=$? at $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
tar czf $OUT/runs.tgz -C /tmp llm_decode llm_own 2>>$OUT/log.txt
echo "end $(date -u), $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
