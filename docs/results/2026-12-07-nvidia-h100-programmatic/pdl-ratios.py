"""Part pdl's table: per (precision, batch) the median ms and mJ over rounds with programmatic_launch off and on,
on/off, and int8-fp16 against fp16 in each arm. Usage: python3 ratios.py DIR (run-{off,on}-N/summary.csv)."""
import csv, glob, os, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for path in sorted(glob.glob(os.path.join(sys.argv[1], "run-*-*", "summary.csv"))):
    arm = os.path.basename(os.path.dirname(path)).split("-")[1]
    for r in csv.DictReader(open(path)):
        if r["status"] != "ok" or r["scope"] != "model":
            continue
        rows[(arm, r["precision"], int(r["batch_size"]))].append(
            (float(r["latency_per_loop_ms"]), float(r["energy_per_inference_mj"])))
med = lambda k, i: statistics.median(v[i] for v in rows[k]) if rows.get(k) else None
print("| precision | batch | ms off | ms on | on/off | mJ off | mJ on | rounds |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for p in ("fp16", "int8-fp16"):
    for b in (16, 64):
        off, on = med(("off", p, b), 0), med(("on", p, b), 0)
        eo, en = med(("off", p, b), 1), med(("on", p, b), 1)
        ratio = f"{on / off:.3f}" if off and on else "-"
        fmt = lambda x: f"{x:.4f}" if x is not None else "-"
        print(f"| {p} | {b} | {fmt(off)} | {fmt(on)} | {ratio} | {fmt(eo)} | {fmt(en)} | {len(rows[('off', p, b)])}/{len(rows[('on', p, b)])} |")
for arm in ("off", "on"):
    for b in (16, 64):
        f, q = med((arm, "fp16", b), 0), med((arm, "int8-fp16", b), 0)
        fe, qe = med((arm, "fp16", b), 1), med((arm, "int8-fp16", b), 1)
        if f and q:
            print(f"{arm}: int8-fp16 b{b} {f / q:.3f}x fp16's speed, {qe / fe:.3f}x its energy")
