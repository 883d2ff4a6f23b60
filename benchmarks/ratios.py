"""Ratio table of the runner against PyTorch from one run on one GPU: latency per batch, throughput
and energy per inference, with the targets of the speed work (issue 7).

    python3 benchmarks/ratios.py TORCH.jsonl RUN_DIR/summary.csv

Speed-up = PyTorch latency / runner latency (throughput ratio; > 1: the runner is faster).
Energy ratio = runner mJ per inference / PyTorch mJ per inference (< 1: the runner spends less).
Targets: fp16/bf16 speed-up >= 1.5 and energy ratio <= 0.6 against eager, speed-up > 1 against
torch.compile fp16; fp32 speed-up >= 1 against eager.
"""
import csv, json, sys

torch_rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") in ("torch_eager", "torch_compile"):
        torch_rows[(r["kind"], r["precision"], int(r["batch_size"]), int(r["seq_len"]))] = r
runner_rows = [r for r in csv.DictReader(open(sys.argv[2])) if r["status"] == "ok" and r["scope"] == "model"]


def verdict(ok):
    return "yes" if ok else "**no**"


print("| precision | batch | runner ms | eager ms | speed-up vs eager | runner mJ/inf | eager mJ/inf "
      "| energy vs eager | compile fp16 ms | speed-up vs compile | target met |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in runner_rows:
    precision, batch, seq = r["precision"], int(r["batch_size"]), int(r["seq_len"])
    eager = torch_rows.get(("torch_eager", precision, batch, seq))
    if eager is None:
        continue
    compiled = torch_rows.get(("torch_compile", "fp16", batch, seq))
    lat = float(r["latency_per_loop_ms"])
    energy = float(r["energy_per_inference_mj"]) if r["energy_per_inference_mj"] else None
    speedup = eager["latency_ms_median"] / lat
    e_ratio = energy / eager["energy_per_inference_mj"] if energy else None
    c_lat = compiled["latency_ms_median"] if compiled else None
    c_speedup = c_lat / lat if c_lat else None
    if precision == "fp32":
        met = speedup >= 1.0
    else:
        met = speedup >= 1.5 and e_ratio is not None and e_ratio <= 0.6 and (c_speedup is None or c_speedup > 1.0)
    fmt = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"
    print(f"| {precision} | {batch} | {lat:.3f} | {eager['latency_ms_median']:.3f} | {speedup:.2f} "
          f"| {fmt(energy)} | {eager['energy_per_inference_mj']:.2f} | {fmt(e_ratio)} | {fmt(c_lat, 3)} "
          f"| {fmt(c_speedup)} | {verdict(met)} |")
