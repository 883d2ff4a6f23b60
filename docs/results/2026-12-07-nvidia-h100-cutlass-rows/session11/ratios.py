"""The ratio tables of the session-11 int8 part (run.sh here): OUT holds summaries.csv (every
runner step's summary.csv with a `step` column first; one binary, branch s11: old-* ran it with
device.pair_norms = false, new-* with pair_norms = true, both with the flagship's keys and device.gemm_tactics =
"timed"; fp16 and int8-fp16 (static FFN steps)) and torch.jsonl (PyTorch reduce-overhead fp16) if any.
Prints every cell of every step, then medians over the steps that ran a cell, with speed
(fp16 ms / ms) and energy (mJ / fp16 mJ) against fp16 of the same binary, each new cell against
the old one, and fp16 against PyTorch's torch.compile.

    python3 ratios.py OUT > ratios.md
"""
import csv, json, os, statistics, sys
from collections import defaultdict

out = sys.argv[1]
cells = defaultdict(list)  # (setting, precision, batch) -> [(step, ms, mJ, cos, min cos, labels, W)]
for r in csv.DictReader(open(os.path.join(out, "summaries.csv"))):
    if r["status"] != "ok" or r["scope"] != "model":
        continue
    f = lambda k: float(r[k]) if r.get(k) else None
    # old-*: pair_norms off; new-*: pair_norms on (the same binary).
    setting = "old" if r["step"].startswith("old") else "new"
    cells[(setting, r["precision"], int(r["batch_size"]))].append(
        (r["step"], f("latency_per_loop_ms"), f("energy_per_inference_mj"), f("fidelity_cosine_vs_fp32"),
         f("fidelity_min_example_cosine"), f("fidelity_label_agreement"), f("avg_power_w")))
torch = defaultdict(list)
tj = os.path.join(out, "torch.jsonl")
for line in open(tj) if os.path.exists(tj) else []:
    r = json.loads(line)
    if r.get("kind") == "torch_compile_reduce_overhead":
        torch[(r["precision"], int(r["batch_size"]))].append((r["latency_ms_median"], r["energy_per_inference_mj"]))

fmt = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"
print("| runner | precision | batch | step | ms | mJ/inf | cosine vs fp32 (min example) | labels | W |")
print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for key in sorted(cells):
    for s, ms, mj, cos, mn, lab, w in cells[key]:
        print(f"| {key[0]} | {key[1]} | {key[2]} | {s} | {fmt(ms)} | {fmt(mj, 2)} | {fmt(cos, 6)} ({fmt(mn, 5)}) | {fmt(lab, 3)} | {fmt(w, 0)} |")
med = lambda rows, i: statistics.median([r[i] for r in rows if r[i] is not None]) if rows else None
r = lambda a, b: f"{a / b:.2f}x" if a and b else "n/a"
print()
print("Medians over the steps that ran a cell; vs fp16: speed = fp16 ms / ms, energy = mJ / fp16 mJ, fp16 of the same key setting; vs old: the same cell with pair_norms off (speed old ms / new ms, energy new mJ / old mJ); PyTorch: its ms / runner ms, runner mJ / its mJ.")
print()
print("| runner | precision | batch | ms | mJ/inf | vs fp16: speed | energy | vs old: speed | energy | vs PyTorch: speed | energy |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for key in sorted(cells, key=lambda k: (k[2], k[1], k[0])):
    ms, mj = med(cells[key], 1), med(cells[key], 2)
    base = cells.get((key[0], "fp16", key[2]))
    bms, bmj = (med(base, 1), med(base, 2)) if base else (None, None)
    off = cells.get(("old",) + key[1:]) if key[0] != "old" else None
    oms, omj = (med(off, 1), med(off, 2)) if off else (None, None)
    t = torch.get((key[1], key[2]))
    tms, tmj = (statistics.median(x[0] for x in t), statistics.median(x[1] for x in t)) if t else (None, None)
    print(f"| {key[0]} | {key[1]} | {key[2]} | {fmt(ms)} | {fmt(mj, 2)} | {r(bms, ms)} | {r(mj, bmj)} | {r(oms, ms)} | {r(mj, omj)} | {r(tms, ms)} | {r(mj, tmj)} |")
print()
for (p, b), v in sorted(torch.items()):
    print(f"PyTorch reduce-overhead {p} b{b}: " + ", ".join(f"{ms:.3f} ms / {mj:.2f} mJ" for ms, mj in v))
print()
for key in sorted(cells):
    if key[0] == "old" or ("old",) + key[1:] not in cells:
        continue
    o, n = cells[("old",) + key[1:]], cells[key]
    print(f"{key[0]} against old, {key[1]} b{key[2]}: {med(o, 1):.3f} -> {med(n, 1):.3f} ms "
          f"({(med(n, 1) - med(o, 1)) * 1e3:+.0f} us), {med(o, 2):.2f} -> {med(n, 2):.2f} mJ")
