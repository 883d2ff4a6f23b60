"""Ratio table of the runner against PyTorch from runs on one GPU: latency per batch and energy per
inference of each runner cell against the BEST PyTorch figure for the same precision and shape
(the fastest of eager, torch.compile and torch.compile(mode="reduce-overhead"), with that kind's
energy), and the runner's own reproducibility (window CV, spread over rounds).

    python3 benchmarks/ratios.py --torch TORCH-1.jsonl [TORCH-2.jsonl ...] \
                                 --runner RUN-1/summary.csv [RUN-2/summary.csv ...] [--csv ratios.csv]

With several rounds (benchmarks/compare_pytorch.sh alternates them), each side's latency and
energy is the median over its rounds, and the spread (min-max over rounds) is printed beside it.
Speed-up = best PyTorch latency / runner latency (> 1: the runner is faster). Energy ratio = runner
mJ per inference / that PyTorch kind's mJ per inference (< 1: the runner spends less).
Targets (issue 15, fp16 and bf16): speed-up >= 1.2, energy ratio <= 0.85, every runner window within
2 % (window CV) and the rounds within 3 % of their median.
"""
import argparse, csv, json, statistics
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("--torch", nargs="+", required=True)
ap.add_argument("--runner", nargs="+", required=True)
ap.add_argument("--csv", help="also write the table as CSV here")
args = ap.parse_args()

TORCH_KINDS = ("torch_eager", "torch_compile", "torch_compile_reduce_overhead", "torch_compile_max_autotune")
# (kind, precision, batch, seq) -> [(latency ms, mJ per inference)] over rounds
torch_rounds = defaultdict(list)
for path in args.torch:
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") in TORCH_KINDS:
            key = (r["kind"], r["precision"], int(r["batch_size"]), int(r["seq_len"]))
            torch_rounds[key].append((r["latency_ms_median"], r["energy_per_inference_mj"]))
# (precision, batch, seq) -> [(latency ms, mJ per inference, window CV, execution)] over rounds
runner_rounds = defaultdict(list)
for path in args.runner:
    for r in csv.DictReader(open(path)):
        if r["status"] == "ok" and r["scope"] == "model":
            key = (r["precision"], int(r["batch_size"]), int(r["seq_len"]))
            energy = float(r["energy_per_inference_mj"]) if r["energy_per_inference_mj"] else None
            cv = float(r["window_cv"]) if r.get("window_cv") else None
            runner_rounds[key].append((float(r["latency_per_loop_ms"]), energy, cv, r.get("execution", "")))


def med(rows, i):
    values = [r[i] for r in rows if r[i] is not None]
    return statistics.median(values) if values else None


def spread(rows, i):
    values = [r[i] for r in rows if r[i] is not None]
    return f"{min(values):.3f}-{max(values):.3f}" if len(values) > 1 else ""


def round_spread_pct(rows, i):
    values = [r[i] for r in rows if r[i] is not None]
    if len(values) < 2:
        return None
    m = statistics.median(values)
    return 100 * max(abs(v - m) for v in values) / m


fmt = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"
print(f"Medians over {len(args.runner)} runner and {len(args.torch)} PyTorch rounds"
      + ("; (min-max over rounds) beside each latency." if len(args.runner) > 1 else "."))
print()
print("| precision | batch | runner ms | best PyTorch | its ms | speed-up | runner mJ/inf | its mJ/inf "
      "| energy ratio | worst window CV % | rounds within % | eager ms | compile ms | reduce-overhead ms | targets met |")
print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
rows_out = []
for (precision, batch, seq), rows in sorted(runner_rounds.items()):
    by_kind = {k: torch_rounds.get((k, precision, batch, seq)) for k in TORCH_KINDS}
    by_kind = {k: v for k, v in by_kind.items() if v}
    if not by_kind:
        continue
    best = min(by_kind, key=lambda k: med(by_kind[k], 0))
    lat, energy = med(rows, 0), med(rows, 1)
    b_lat, b_energy = med(by_kind[best], 0), med(by_kind[best], 1)
    speedup = b_lat / lat
    e_ratio = energy / b_energy if energy and b_energy else None
    cvs = [r[2] for r in rows if r[2] is not None]
    worst_cv = 100 * max(cvs) if cvs else None
    within = round_spread_pct(rows, 0)
    targeted = precision in ("fp16", "bf16")
    met = (targeted and speedup >= 1.2 and e_ratio is not None and e_ratio <= 0.85
           and worst_cv is not None and worst_cv <= 2.0 and (within is None or within <= 3.0))
    kind_ms = lambda k: fmt(med(by_kind[k], 0), 3) if k in by_kind else "n/a"
    print(f"| {precision} | {batch} | {fmt(lat, 3)}{f' ({spread(rows, 0)})' if spread(rows, 0) else ''} "
          f"| {best.replace('torch_', '')} | {fmt(b_lat, 3)} | {speedup:.2f} | {fmt(energy)} | {fmt(b_energy)} "
          f"| {fmt(e_ratio)} | {fmt(worst_cv)} | {fmt(within)} | {kind_ms('torch_eager')} | {kind_ms('torch_compile')} "
          f"| {kind_ms('torch_compile_reduce_overhead')} | {('yes' if met else '**no**') if targeted else 'no target'} |")
    rows_out.append({"precision": precision, "batch": batch, "seq_len": seq, "runner_ms": lat,
                     "best_torch_kind": best, "best_torch_ms": b_lat, "speedup": speedup,
                     "runner_mj": energy, "best_torch_mj": b_energy, "energy_ratio": e_ratio,
                     "runner_worst_window_cv_pct": worst_cv, "runner_rounds_within_pct": within,
                     "runner_rounds": len(rows), "targets_met": met if targeted else ""})
if args.csv:
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows_out[0]) if rows_out else ["precision"])
        w.writeheader()
        w.writerows(rows_out)
