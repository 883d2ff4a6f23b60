"""Ratio table runner / PyTorch from one run on one GPU: latency per batch and energy per inference.

    python3 benchmarks/ratios.py TORCH.jsonl RUN_DIR/summary.csv
"""
import csv, json, sys

torch_rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "torch_eager":
        torch_rows[(r["precision"], int(r["batch_size"]), int(r["seq_len"]))] = r
runner_rows = [r for r in csv.DictReader(open(sys.argv[2])) if r["status"] == "ok"]

print("| precision | batch | runner ms/batch | PyTorch ms/batch | latency ratio (runner/PyTorch) "
      "| runner mJ/inference | PyTorch mJ/inference | energy ratio (runner/PyTorch) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in runner_rows:
    key = (r["precision"], int(r["batch_size"]), int(r["seq_len"]))
    t = torch_rows.get(key)
    if t is None:
        continue
    lat, tlat = float(r["latency_per_loop_ms"]), t["latency_ms_median"]
    energy = float(r["energy_per_inference_mj"]) if r["energy_per_inference_mj"] else None
    tenergy = t["energy_per_inference_mj"]
    e_ratio = f"{energy / tenergy:.2f}" if energy else "n/a"
    e_text = f"{energy:.2f}" if energy else "n/a"
    print(f"| {key[0]} | {key[1]} | {lat:.3f} | {tlat:.3f} | {lat / tlat:.2f} | {e_text} | {tenergy:.2f} | {e_ratio} |")
