"""Ratio table of the runner against PyTorch from runs on one GPU: latency per batch, throughput
and energy per inference, with the targets of the speed work (issue 7).

    python3 benchmarks/ratios.py --torch TORCH-1.jsonl [TORCH-2.jsonl ...] \
                                 --runner RUN-1/summary.csv [RUN-2/summary.csv ...]

With several rounds (benchmarks/compare_pytorch.sh alternates them), each side's latency and
energy is the median over its rounds, and the spread (min-max over rounds) is printed beside it.
Speed-up = PyTorch latency / runner latency (throughput ratio; > 1: the runner is faster).
Energy ratio = runner mJ per inference / PyTorch mJ per inference (< 1: the runner spends less).
Targets: fp16/bf16 speed-up >= 1.5 and energy ratio <= 0.6 against eager, speed-up > 1 against
torch.compile fp16; fp32 speed-up >= 1 against eager.
"""
import argparse, csv, json, statistics
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("--torch", nargs="+", required=True)
ap.add_argument("--runner", nargs="+", required=True)
args = ap.parse_args()

# (kind, precision, batch, seq) -> [(latency ms, mJ per inference)] over rounds
torch_rounds = defaultdict(list)
for path in args.torch:
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") in ("torch_eager", "torch_compile"):
            key = (r["kind"], r["precision"], int(r["batch_size"]), int(r["seq_len"]))
            torch_rounds[key].append((r["latency_ms_median"], r["energy_per_inference_mj"]))
runner_rounds = defaultdict(list)
for path in args.runner:
    for r in csv.DictReader(open(path)):
        if r["status"] == "ok" and r["scope"] == "model":
            key = (r["precision"], int(r["batch_size"]), int(r["seq_len"]))
            energy = float(r["energy_per_inference_mj"]) if r["energy_per_inference_mj"] else None
            runner_rounds[key].append((float(r["latency_per_loop_ms"]), energy))


def med(rows, i):
    values = [r[i] for r in rows if r[i] is not None]
    return statistics.median(values) if values else None


def spread(rows, i):
    values = [r[i] for r in rows if r[i] is not None]
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else ""


fmt = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"
n_rounds = max(len(args.torch), len(args.runner))
print(f"Medians over {len(args.runner)} runner and {len(args.torch)} PyTorch rounds"
      + ("; (min-max over rounds) beside each latency." if n_rounds > 1 else "."))
print()
print("| precision | batch | runner ms | eager ms | speed-up vs eager | runner mJ/inf | eager mJ/inf "
      "| energy vs eager | compile fp16 ms | speed-up vs compile | target met |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for (precision, batch, seq), rows in runner_rounds.items():
    eager = torch_rounds.get(("torch_eager", precision, batch, seq))
    if not eager:
        continue
    compiled = torch_rounds.get(("torch_compile", "fp16", batch, seq))
    lat, energy = med(rows, 0), med(rows, 1)
    e_lat, e_energy = med(eager, 0), med(eager, 1)
    speedup = e_lat / lat
    e_ratio = energy / e_energy if energy and e_energy else None
    c_lat = med(compiled, 0) if compiled else None
    c_speedup = c_lat / lat if c_lat else None
    if precision == "fp32":
        met = speedup >= 1.0
    else:
        met = speedup >= 1.5 and e_ratio is not None and e_ratio <= 0.6 and (c_speedup is None or c_speedup > 1.0)
    with_spread = lambda v, rows, d=3: fmt(v, d) + (f" ({spread(rows, 0)})" if spread(rows, 0) else "")
    print(f"| {precision} | {batch} | {with_spread(lat, rows)} | {with_spread(e_lat, eager)} | {speedup:.2f} "
          f"| {fmt(energy)} | {fmt(e_energy)} | {fmt(e_ratio)} "
          f"| {with_spread(c_lat, compiled) if compiled else 'n/a'} "
          f"| {fmt(c_speedup)} | {'yes' if met else '**no**'} |")
