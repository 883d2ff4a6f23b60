"""The ratio tables of the session-6 int8 call (run.sh here): OUT holds run-<step>.csv (each
runner step's summary.csv: std-* with device.gelu_epilogue standard, lean-* and dyn with "lean";
std/lean with static FFN steps, dyn with dynamic scales) and torch.jsonl (PyTorch reduce-overhead
fp16 and its W8A8 int8). Prints every cell of every step, then medians over the steps that ran a
cell, with speed (fp16 ms / ms) and energy (mJ / fp16 mJ) against fp16 of the same epilogue
setting, and each runner cell against PyTorch (speed-up = PyTorch ms / runner ms).

    python3 ratios.py OUT > ratios.md
"""
import csv, glob, json, os, statistics, sys
from collections import defaultdict

out = sys.argv[1]
label = {"std": "standard", "lean": "lean", "dyn": "lean"}
cells = defaultdict(list)  # (epilogue, scales, precision, batch) -> [(step, ms, mJ, cos, labels, cv)]
for path in sorted(glob.glob(os.path.join(out, "run-*.csv"))):
    step = os.path.basename(path)[4:-4]
    kind = step.split("-")[0]
    for r in csv.DictReader(open(path)):
        if r["status"] != "ok" or r["scope"] != "model":
            continue
        f = lambda k: float(r[k]) if r.get(k) else None
        scales = "dynamic" if kind == "dyn" or r["precision"] == "fp16" else "static"
        cells[(label[kind], scales, r["precision"], int(r["batch_size"]))].append(
            (step, f("latency_per_loop_ms"), f("energy_per_inference_mj"),
             f("fidelity_cosine_vs_fp32"), f("fidelity_label_agreement"), f("window_cv")))
torch = defaultdict(list)
for line in open(os.path.join(out, "torch.jsonl")) if os.path.exists(os.path.join(out, "torch.jsonl")) else []:
    r = json.loads(line)
    if r.get("kind") == "torch_compile_reduce_overhead":
        torch[(r["precision"], int(r["batch_size"]))].append((r["latency_ms_median"], r["energy_per_inference_mj"]))

fmt = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"
print("| epilogue | FFN scales | precision | batch | step | ms | mJ/inf | cosine vs fp32 | labels | window CV |")
print("| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for key in sorted(cells):
    for s, ms, mj, cos, lab, cv in cells[key]:
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {s} | {fmt(ms)} | {fmt(mj, 2)} | {fmt(cos, 6)} | {fmt(lab, 3)} | {fmt(cv, 4)} |")
med = lambda rows, i: statistics.median([r[i] for r in rows if r[i] is not None]) if rows else None
print()
print("Medians over the steps that ran a cell; speed = fp16 ms / ms and energy = mJ / fp16 mJ, fp16 of the same epilogue setting; PyTorch: its ms / runner ms, runner mJ / its mJ.")
print()
print("| epilogue | FFN scales | precision | batch | ms | mJ/inf | vs fp16: speed | energy | vs PyTorch: speed | energy |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for key in sorted(cells, key=lambda k: (k[3], k[0], k[2], k[1])):
    ms, mj = med(cells[key], 1), med(cells[key], 2)
    base = cells.get((key[0], "dynamic", "fp16", key[3]))
    bms, bmj = (med(base, 1), med(base, 2)) if base else (None, None)
    ref = key[2] if key[2] in ("fp16", "int8-fp16") else None
    t = torch.get((ref, key[3])) if ref else None
    tms, tmj = (statistics.median(x[0] for x in t), statistics.median(x[1] for x in t)) if t else (None, None)
    r = lambda a, b: f"{a / b:.2f}x" if a and b else "n/a"
    print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {fmt(ms)} | {fmt(mj, 2)} | {r(bms, ms)} | {r(mj, bmj)} | {r(tms, ms)} | {r(mj, tmj)} |")
print()
for (p, b), v in sorted(torch.items()):
    print(f"PyTorch reduce-overhead {p} b{b}: " + ", ".join(f"{ms:.3f} ms / {mj:.2f} mJ" for ms, mj in v))
print()
for key in sorted(cells):
    if key[0] != "lean" or ("standard",) + key[1:] not in cells:
        continue
    s, l = cells[("standard",) + key[1:]], cells[key]
    print(f"lean against standard, {key[2]} ({key[1]} FFN scales) b{key[3]}: {med(s, 1):.3f} -> {med(l, 1):.3f} ms "
          f"({(med(l, 1) - med(s, 1)) * 1e3:+.0f} us), {med(s, 2):.2f} -> {med(l, 2):.2f} mJ")
