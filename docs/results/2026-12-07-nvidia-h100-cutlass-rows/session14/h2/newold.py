"""New (branch s14: i8_codes_gelu_pp128h2) against old (main's kernels) from one call's alternating runs:
per cell the median ms / mJ of each binary's runs, new / old, and each binary's 8-bit against its own fp16.

    python3 newold.py DIR   (DIR holds summary-run-new-N.csv and summary-run-old-N.csv)
"""
import csv, glob, os, statistics, sys
d = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(d, "summary-run-*-*.csv"))):
    side = os.path.basename(path).split("-")[2]
    if side not in ("new", "old"):
        continue
    for r in csv.DictReader(open(path)):
        if r["status"] != "ok" or r["scope"] != "model":
            continue
        k = (side, r["precision"], int(r["batch_size"]))
        rows.setdefault(k, []).append((float(r["latency_per_loop_ms"]), float(r["energy_per_inference_mj"]),
                                       float(r["fidelity_cosine_vs_fp32"] or "nan")))
med = lambda k, i: statistics.median(v[i] for v in rows[k]) if k in rows else None
print("| cell | runs | old ms / mJ | new ms / mJ | new vs old (speed) | old vs fp16 (speed / energy) | new vs fp16 (speed / energy) | cosine old / new |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for p, b in sorted({(k[1], k[2]) for k in rows}, key=lambda x: (x[1], x[0])):
    o, n = ("old", p, b), ("new", p, b)
    if o not in rows or n not in rows:
        continue
    fo, fn = ("old", "fp16", b), ("new", "fp16", b)
    def vs(side, f):
        if p == "fp16" or f not in rows:
            return ""
        return f"{med(f, 0) / med(side, 0):.3f}x / {med(side, 1) / med(f, 1):.3f}x"
    print(f"| {p} b{b} | {len(rows[o])}+{len(rows[n])} | {med(o,0):.3f} / {med(o,1):.2f} | {med(n,0):.3f} / {med(n,1):.2f} "
          f"| {med(o,0)/med(n,0):.3f}x ({(med(n,0)-med(o,0))*1000:+.0f} us) | {vs(o, fo)} | {vs(n, fn)} | {med(o,2):.6f} / {med(n,2):.6f} |")
