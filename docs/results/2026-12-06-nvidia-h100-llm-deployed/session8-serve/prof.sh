#!/usr/bin/env bash
# serve, session 8, call 1 (limit 60 s): why llm_decode.toml's eager bf16 b1 cells vary (issue 30, "twice").
# One SmolLM2-135M bf16 b1 cell of experiments/llm_decode.toml (candle-transformers' eager llama,
# prompt 512 + 128 new tokens, exactly the file's cell) with 10 short decode windows (each ~2 loops of
# 128 steps: ~24 per-loop latencies in the record), main's runner (.s8/bin/runner.xz), while
# monitor.py logs every 0.1 s the machine's CPU times (steal), the load and each runner thread's core,
# CPU time and context switches: are slow loops the host (steal, migrations, another thread) or the cell?
set -uo pipefail
OUT=${1:?usage: go.sh OUT}
H=$(cd "$(dirname "$0")" && pwd)
W=/tmp/s8-serve-prof
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt host.txt run.log; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
step "host"
{
    nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv
    cat /work/main/.s8/bin/BUILT .s8/bin/BUILT 2>/dev/null
    echo "nproc $(nproc)"; lscpu 2>/dev/null | grep -Ei 'model name|^CPU\(s\)|thread|core|socket|numa|mhz|hypervisor|l3'
    grep MHz /proc/cpuinfo | sort | uniq -c
    cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo "no cpufreq"
    cat /sys/fs/cgroup/cpu.max 2>/dev/null; cat /proc/pressure/cpu 2>/dev/null
    nvidia-smi topo -m 2>/dev/null | head -5
    echo "-- /proc/stat"; head -1 /proc/stat; cat /proc/loadavg
    echo "-- busiest processes"; ps -eo pid,pcpu,psr,comm --sort=-pcpu | head -8
} >"$W/host.txt" 2>&1
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "${RUNNER_XZ:-.s8/bin/runner.xz}" /tmp/s8-serve-runner && chmod +x /tmp/s8-serve-runner || { echo "no runner" >>"$W/steps.txt"; exit 9; }
/tmp/s8-serve-runner --version >>"$W/host.txt" 2>&1
step "runner: smollm2-135m bf16 b1, 10 decode windows, host monitor (timeout 54 s)"
S=(--set 'matrix.model=["smollm2-135m"]' --set 'matrix.precision=["bf16"]' --set 'matrix.batch_size=[1]'
   --set protocol.warmup_s=2.0 --set protocol.stabilize_s=1.0 --set protocol.min_window_s=0.3 --set protocol.min_loops=1
   --set protocol.repeats=10 --set protocol.idle_settle_s=0.3 --set protocol.idle_baseline_s=0.5)
timeout -k 3 -s INT 54 /tmp/s8-serve-runner run experiments/llm_decode.toml --out "$W/decode" "${S[@]}" >"$W/run.log" 2>&1 &
RP=$!
# the runner is timeout's child
CP=""; for _ in $(seq 50); do CP=$(pgrep -P "$RP" | head -1); [ -n "$CP" ] && break; sleep 0.02; done
[ -n "$CP" ] || CP=$RP
python3 "$H/monitor.py" "$CP" "$W/monitor.csv" 0.1 &
MP=$!
wait "$RP"; echo "runner exit $?" >>"$W/steps.txt"
kill "$MP" 2>/dev/null; wait "$MP" 2>/dev/null
echo "-- after" >>"$W/host.txt"; head -1 /proc/stat >>"$W/host.txt"; cat /proc/loadavg >>"$W/host.txt"
step "summary"
python3 - "$W" >"$W/loops.txt" 2>&1 <<'PY'
import json, glob, sys, statistics as st
for p in glob.glob(sys.argv[1] + "/decode/cells/*.json"):
    d = json.load(open(p))
    print(p, d.get("started_at"), d.get("ended_at"), "warm-up", d.get("warmup"))
    ms = []
    for w in d["windows"]:
        print(f"  loops {w['loops']} dur {w['duration_s']:.3f} E {w.get('energy_j')} ms/step {[round(x, 3) for x in w['loop_ms']]}")
        ms += w["loop_ms"]
    if len(ms) > 1:
        print(f"  per-loop ms/step: n {len(ms)} median {st.median(ms):.3f} mean {st.mean(ms):.3f} CV {st.stdev(ms) / st.mean(ms) * 100:.1f} % min {min(ms):.3f} max {max(ms):.3f}")
PY
cat "$W/loops.txt" | tee -a "$W/steps.txt"
step done
