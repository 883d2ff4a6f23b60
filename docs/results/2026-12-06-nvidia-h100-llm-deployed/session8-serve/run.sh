#!/usr/bin/env bash
# serve, session 8, call 2 (limit 260 s), the runner from branch serve8 (runner.xz here; its commit in BUILT):
#  (1) issue 30's prefill target with the new default prefill_attention = "auto" (flash for bf16 on CUDA):
#      PyTorch's prefill + first token (benchmarks/pytorch_decode.py --prefill-only: generate(1) with the
#      compiled way's static cache; its prefill is eager there anyway, so no decode step is compiled), then the
#      runner's own-decoder cells at batch 1 and 8 (prefill.toml), and the ratios;
#  (2) llm_decode.toml twice (bf16 b1, SmolLM2-135M and Qwen2.5-0.5B: the cells that missed 3 % in session 7;
#      Llama-3.2-1B met it), each run beside monitor.py (the runner's threads) and probe.py (the host CPU's
#      speed), then `runner compare`; the records now hold each decode window's host steps and the measuring
#      thread's CPU time (twice-host.txt summarizes them).
set -uo pipefail
OUT=${1:?usage: go.sh OUT}
H=$(cd "$(dirname "$0")" && pwd)
ROOT=$PWD
W=/tmp/s8-serve-run
rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
LIMIT=${LIMIT_S:-126}
pack() {
    tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=charts --exclude='*.html' --exclude=traces . 2>/dev/null
    for f in steps.txt gpu.txt prefill-ratios.txt compare.txt twice-host.txt torch.jsonl; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
}
trap pack EXIT
step() { pack; echo "== $(date -u +%T) (+$(( $(date +%s) - T0 )) s) $*" | tee -a "$W/steps.txt"; }
budget() {  # budget WANTED [RESERVE]: seconds to give a step, never past the limit
    local left=$(( LIMIT - ($(date +%s) - T0) - ${2:-4} ))
    local t=$1; [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 5 ] && t=0
    echo "$t"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm,clocks.max.sm \
    --format=csv >"$W/gpu.txt" 2>&1
cat "$H/BUILT" >>"$W/gpu.txt"
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$H/runner.xz" /tmp/s8-serve-runner2 && chmod +x /tmp/s8-serve-runner2 || { echo "no runner" >>"$W/steps.txt"; exit 9; }
R=/tmp/s8-serve-runner2
$R --version >>"$W/gpu.txt" 2>&1
# The experiment files with absolute dataset paths (this folder is not experiments/).
sed "s#\.\./datasets#$ROOT/datasets#" "$H/prefill.toml" >"$W/prefill.toml"
sed "s#\.\./datasets#$ROOT/datasets#" "$H/llm_decode.toml" >"$W/llm_decode.toml"

t=$(budget 20)
step "PyTorch prefill + first token, b8 (timeout $t s)"
timeout -s KILL "$t" python3 "$H/pytorch_decode.py" --ways compiled --prefill-only --window-s 1.0 --out "$W/torch.jsonl" \
    llama-3.2-1b:8 qwen2.5-0.5b:8 smollm2-135m:8 >"$W/torch.txt" 2>&1
echo "torch exit $?" >>"$W/steps.txt"

t=$(budget 34)
step "runner prefill cells, auto default, b8 (timeout $t s)"
timeout -k 3 -s INT "$t" $R run "$W/prefill.toml" --out "$W/prefill" --set 'matrix.batch_size=[8]' >"$W/prefill.log" 2>&1
echo "runner exit $?" >>"$W/steps.txt"
if [ -d "$W/prefill" ] && [ ! -f "$W/prefill/summary.csv" ]; then
    timeout 8 $R report "$W/prefill" >>"$W/prefill.log" 2>&1; echo "report exit $?" >>"$W/steps.txt"
fi
step "prefill ratios"
timeout 10 python3 - "$W" >"$W/prefill-ratios.txt" 2>&1 <<'PY'
import csv, json, glob, sys
w = sys.argv[1]
torch = {}
import os
for line in (open(w + "/torch.jsonl") if os.path.exists(w + "/torch.jsonl") else []):
    r = json.loads(line)
    if r.get("prefill_only"):
        torch[(r["preset"], int(r["batch"]))] = r
print("model,batch,runner_prefill_ms,prefill_attention,pytorch_prefill_plus_first_ms,ratio,met,runner_mj_per_prompt_token,pytorch_mj_prefill_plus_first")
cells = {}
for p in glob.glob(w + "/prefill/cells/*.json"):
    d = json.load(open(p)); cells[d["cell"]["id"]] = d
for row in csv.DictReader(open(w + "/prefill/summary.csv")):
    preset = row["model"].rsplit("-fused", 1)[0]
    t = torch.get((preset, int(row["batch_size"])))
    d = cells.get(row["cell_id"], {})
    attention = (d.get("implementation") or {}).get("prefill_attention", "?").split(" ")[0].rstrip(":")
    ms = float(row["prefill_ms"]) if row.get("prefill_ms") else None
    ratio = ms / t["prefill_plus_first_ms"] if (t and ms) else None
    print(f"{row['model']},{row['batch_size']},{ms},{attention},{t['prefill_plus_first_ms'] if t else ''},"
          f"{'' if ratio is None else round(ratio, 3)},{'' if ratio is None else ratio <= 1.0},"
          f"{row.get('prefill_mj_per_prompt_token', '')},{t.get('mj_prefill_plus_first', '') if t else ''}")
PY
cat "$W/prefill-ratios.txt"

S=(--set 'matrix.model=["smollm2-135m"]' --set 'matrix.precision=["bf16"]' --set 'matrix.batch_size=[1]'
   --set protocol.warmup_s=0.5 --set protocol.stabilize_s=0.2 --set protocol.min_window_s=1.0 --set protocol.min_loops=1
   --set protocol.idle_settle_s=0.3 --set protocol.idle_baseline_s=0.5)
for i in 1 2; do
    t=$(budget 33 5)
    step "llm_decode run $i (timeout $t s)"
    [ "$t" = 0 ] && { echo "skipped: no time left" >>"$W/steps.txt"; continue; }
    rm -f "$W/stop$i"
    python3 "$H/probe.py" "$W/probe$i.csv" "$W/stop$i" &
    PP=$!
    timeout -k 5 -s INT "$t" $R run "$W/llm_decode.toml" --out "$W/decode$i" "${S[@]}" >"$W/decode$i.log" 2>&1 &
    RP=$!
    CP=""; for _ in $(seq 50); do CP=$(pgrep -P "$RP" | head -1); [ -n "$CP" ] && break; sleep 0.02; done
    [ -n "$CP" ] || CP=$RP
    python3 "$H/monitor.py" "$CP" "$W/monitor$i.csv" 0.25 &
    MP=$!
    wait "$RP"; echo "run $i exit $?" >>"$W/steps.txt"
    touch "$W/stop$i"; kill "$MP" 2>/dev/null; wait "$MP" "$PP" 2>/dev/null
done
step compare
timeout 15 $R compare "$W/decode1" "$W/decode2" >"$W/compare.txt" 2>&1
echo "compare exit $?" >>"$W/steps.txt"
cat "$W/compare.txt"
step "host evidence"
timeout 10 python3 - "$W" >"$W/twice-host.txt" 2>&1 <<'PY'
import json, glob, sys, statistics as st
w = sys.argv[1]
for run in ("decode1", "decode2"):
    for p in sorted(glob.glob(f"{w}/{run}/cells/*.json")):
        d = json.load(open(p)); c = d["cell"]
        print(f"{run} {c['id']} {c['model']} warm-up {d.get('warmup')}")
        hs = (d.get("generate") or {}).get("decode_host_steps", [])
        for i, win in enumerate(d.get("windows", [])):
            h = win.get("host") or {}
            s = hs[i] if i < len(hs) else {}
            on = h.get("thread_cpu_s", 0) / win["duration_s"] if win["duration_s"] else 0
            print(f"  w{i + 1} {win['loops']} steps {win['duration_s']:.3f} s, ms/step per loop {[round(x, 3) for x in win['loop_ms']]}, "
                  f"thread on CPU {on:.1%}, preempted {h.get('involuntary_switches')}, host step p50 {s.get('p50_ms', 0):.3f} "
                  f"p90 {s.get('p90_ms', 0):.3f} max {s.get('max_ms', 0):.2f} ms, stalls {s.get('stalls')} ({s.get('stall_ms', 0):.1f} ms)")
    try:
        pr = [float(l.split(",")[1]) for l in open(f"{w}/probe{run[-1]}.csv").readlines()[1:]]
        print(f"  probe ms: n {len(pr)} median {st.median(pr):.3f} p10 {sorted(pr)[len(pr) // 10]:.3f} p90 {sorted(pr)[9 * len(pr) // 10]:.3f} max {max(pr):.3f}")
    except Exception as e:
        print("  probe:", e)
PY
cat "$W/twice-host.txt"
step done
