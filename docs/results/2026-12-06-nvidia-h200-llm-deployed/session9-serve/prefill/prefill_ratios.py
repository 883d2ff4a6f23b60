"""Issue 30's prefill target, one table: the runner's prefill (prompt + the first token's argmax, one captured graph;
prefill_ms, the median of its windows, with the 95 % interval where 6 windows ran) against PyTorch's prefill + first
token (benchmarks/pytorch_decode.py --prefill-only: generate(1) on the compiled way's static cache, eager prefill),
both measured in the same device call. Energy: the runner's gross prefill energy per batch (prefill mJ per prompt
token x batch x prompt, idle included, as PyTorch's NVML counter difference is) against PyTorch's per generate(1).
`attention` is what the record says ran (implementation.prefill_attention), `chosen_by_auto` whether the record
says auto chose it.

    python3 prefill_ratios.py torch.jsonl RUN_DIR [RUN_DIR ...] --out ratios.csv
"""
import argparse, csv, glob, json, os

ap = argparse.ArgumentParser()
ap.add_argument("torch")
ap.add_argument("runs", nargs="+")
ap.add_argument("--out", default="ratios.csv")
args = ap.parse_args()

torch = {}
if os.path.exists(args.torch):
    for line in open(args.torch):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("prefill_only"):
            torch[(r["preset"], int(r["batch"]))] = r

rows = []
for d in args.runs:
    recs = {}
    for p in glob.glob(os.path.join(d, "cells", "*.json")):
        try:
            rec = json.load(open(p))
            recs[rec["cell"]["id"]] = rec
        except (ValueError, KeyError, OSError):
            pass
    try:
        summary = list(csv.DictReader(open(os.path.join(d, "summary.csv"))))
    except OSError:
        summary = []
    for row in summary:
        if row.get("status") != "ok" or not row.get("prefill_ms"):
            continue
        preset = row["model"].rsplit("-fused", 1)[0]
        b, prompt = int(row["batch_size"]), int(row["prompt_len"])
        rec = recs.get(row["cell_id"], {})
        text = (rec.get("implementation") or {}).get("prefill_attention", "")
        execution = (rec.get("implementation") or {}).get("prefill_execution", "")
        t = torch.get((preset, b))
        ms = float(row["prefill_ms"])
        mj_batch = float(row["prefill_mj_per_prompt_token"]) * b * prompt if row.get("prefill_mj_per_prompt_token") else None
        wins = len((rec.get("generate") or {}).get("prefill_windows") or [])
        out = dict(preset=preset, batch=b, prompt=prompt, cell=row["cell_id"],
                   attention=text.split(" ")[0] if text else "?",
                   chosen_by_auto='prefill_attention = "auto": flash' in text,
                   graph=execution.startswith("cuda-graph") if execution else "",
                   prefill_windows=wins,
                   runner_prefill_ms=ms, runner_ci_low_ms=row.get("prefill_ci_low_ms", ""),
                   runner_ci_high_ms=row.get("prefill_ci_high_ms", ""),
                   pytorch_prefill_plus_first_ms=t["prefill_plus_first_ms"] if t else "",
                   pytorch_runs=t.get("runs_first", "") if t else "",
                   runner_mj_per_prefill=mj_batch if mj_batch is not None else "",
                   pytorch_mj_prefill_plus_first=t.get("mj_prefill_plus_first", "") if t else "")
        if t:
            out["prefill_ratio"] = ms / t["prefill_plus_first_ms"]
            out["prefill_met"] = out["prefill_ratio"] <= 1.0
            if row.get("prefill_ci_high_ms"):
                out["ratio_ci_high"] = float(row["prefill_ci_high_ms"]) / t["prefill_plus_first_ms"]
            if mj_batch is not None and t.get("mj_prefill_plus_first"):
                out["energy_ratio"] = mj_batch / t["mj_prefill_plus_first"]
        rows.append(out)
order = {"llama-3.2-1b": 0, "qwen2.5-0.5b": 1, "smollm2-135m": 2}
rows.sort(key=lambda r: (order.get(r["preset"], 9), r["batch"]))
keys = ["preset", "batch", "prompt", "cell", "attention", "chosen_by_auto", "graph", "prefill_windows",
        "runner_prefill_ms", "runner_ci_low_ms", "runner_ci_high_ms", "pytorch_prefill_plus_first_ms", "pytorch_runs",
        "prefill_ratio", "ratio_ci_high", "prefill_met", "runner_mj_per_prefill", "pytorch_mj_prefill_plus_first",
        "energy_ratio"]
with open(args.out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
fmt = lambda v, p=3: f"{v:.{p}f}" if isinstance(v, float) else "-"
print("target: the runner's prefill <= 1.0x PyTorch's prefill + first token, same call")
for r in rows:
    print(f"{r['preset']:>13} b{r['batch']}: {r['attention']} (auto chose it: {r['chosen_by_auto']}, graph: {r['graph']}, "
          f"{r['prefill_windows']} windows) {fmt(r['runner_prefill_ms'])} ms against PyTorch "
          f"{fmt(r['pytorch_prefill_plus_first_ms'] or None)} ms: ratio {fmt(r.get('prefill_ratio'))} "
          f"(met: {r.get('prefill_met', '-')}); energy {fmt(r['runner_mj_per_prefill'] or None, 1)} mJ against "
          f"{fmt(r['pytorch_mj_prefill_plus_first'] or None, 1)} mJ: {fmt(r.get('energy_ratio'))}")
missing = [f"{p} b{b}" for (p, b) in sorted(torch) if not any(r["preset"] == p and r["batch"] == b for r in rows)]
if missing:
    print("PyTorch measured, no runner record:", ", ".join(missing))
