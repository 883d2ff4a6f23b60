"""Issue 31's ratio tables from one GPU call of benchmarks/cutlass_gpu.sh (OUT holds
run-<library>-<round>/summary.csv and torch-<round>.jsonl): medians over rounds.

1. Each runner cell with cuBLASLt and with CUTLASS (device.gemm_library; "...fast": fp8-fp16 with
   device.fp8_fast_accumulation, against the same library's fp16), and its speed and energy
   against fp16 of the same library and of cuBLASLt (today's fp16), with fidelity. Targets (8-bit
   against fp16): speed >= 1.3x at batch 16, >= 1.6x at 64; energy <= 0.75x; cosine >= 0.999.
2. Against PyTorch in the same call (torch.compile mode="reduce-overhead"; for 8-bit its own W8A8,
   benchmarks/pytorch_w8a8.py): speed-up = PyTorch ms / runner ms, energy ratio = runner mJ / its
   mJ. Targets: fp16 >= 1.2x at batch 64 and energy <= 0.85x; 8-bit faster and cheaper.

    python3 benchmarks/cutlass_ratios.py OUT
"""
import csv, glob, json, os, statistics, sys
from collections import defaultdict

out = sys.argv[1]
runs = defaultdict(list)  # (library, precision, batch, quantize) -> [(ms, mJ, cosine, labels, cv)]
for path in sorted(glob.glob(os.path.join(out, "run-*-*", "summary.csv"))):
    library = os.path.basename(os.path.dirname(path)).split("-")[1]
    for r in csv.DictReader(open(path)):
        if r["status"] != "ok" or r["scope"] != "model":
            continue
        f = lambda k: float(r[k]) if r.get(k) else None
        # The layers quantized ("all", "blocks:0-5"; fp16: none) tell cells of one precision apart.
        runs[(library, r["precision"], int(r["batch_size"]), r.get("quantize") or "")].append(
            (f("latency_per_loop_ms"), f("energy_per_inference_mj"), f("fidelity_cosine_vs_fp32"),
             f("fidelity_label_agreement"), f("window_cv")))
torch = defaultdict(list)  # (precision, batch) -> [(ms, mJ)]
for path in sorted(glob.glob(os.path.join(out, "torch-*.jsonl"))):
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") == "torch_compile_reduce_overhead":
            torch[(r["precision"], int(r["batch_size"]))].append(
                (r["latency_ms_median"], r["energy_per_inference_mj"]))
        elif r.get("kind") in ("setup", "setup_w8a8"):
            print(f"PyTorch {r}")


def med(rows, i):
    v = [r[i] for r in rows if r[i] is not None]
    return statistics.median(v) if v else None


fmt = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"
ratio = lambda a, b: a / b if a is not None and b else None
print()
print(f"Runner cells (medians over {max((len(v) for v in runs.values()), default=0)} round(s))")
print()
print("| precision | quantize | batch | library | ms | mJ/inf | speed vs fp16 (same library) | energy vs fp16 (same) "
      "| speed vs fp16 cuBLASLt | energy vs fp16 cuBLASLt | CUTLASS speed-up over cuBLASLt | cosine vs fp32 | labels | window CV % | targets |")
print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for (library, precision, batch, quantize) in sorted(runs, key=lambda k: (k[2], k[1], k[3], k[0])):
    rows = runs[(library, precision, batch, quantize)]
    ms, mj = med(rows, 0), med(rows, 1)
    # "cutlassfast" / "cublasltfast": FP8 with device.fp8_fast_accumulation, against the fp16 of
    # the same library's run and the cuBLASLt fast-accumulation run.
    fast = library.endswith("fast")
    plain = library.removesuffix("fast")
    same = runs.get((plain, "fp16", batch, ""), [])
    base = runs.get(("cublaslt", "fp16", batch, ""), [])
    other = runs.get(("cublaslt" + ("fast" if fast else ""), precision, batch, quantize), [])
    speed_same, energy_same = ratio(med(same, 0), ms), ratio(mj, med(same, 1))
    speed_base, energy_base = ratio(med(base, 0), ms), ratio(mj, med(base, 1))
    over = ratio(med(other, 0), ms) if plain == "cutlass" else None
    cos, labels, cv = med(rows, 2), med(rows, 3), med(rows, 4)
    target = "n/a"
    if precision != "fp16" and speed_same is not None:
        need = 1.3 if batch == 16 else 1.6
        met = (speed_same >= need and energy_same is not None and energy_same <= 0.75
               and cos is not None and cos >= 0.999)
        target = "met" if met else f"**not met** (>= {need}x, <= 0.75x, cosine >= 0.999)"
    print(f"| {precision} | {quantize or '-'} | {batch} | {library} | {fmt(ms)} | {fmt(mj, 2)} | {fmt(speed_same, 2)} | {fmt(energy_same, 2)} "
          f"| {fmt(speed_base, 2)} | {fmt(energy_base, 2)} | {fmt(over, 2)} | {fmt(cos, 5)} "
          f"| {fmt(None if labels is None else 100 * labels, 1)} % | {fmt(None if cv is None else 100 * cv, 2)} | {target} |")
print()
print("Against PyTorch in the same call (reduce-overhead; 8-bit: PyTorch's own W8A8)")
print()
print("| precision | quantize | batch | library | runner ms | PyTorch ms | speed-up | runner mJ | PyTorch mJ | energy ratio | targets |")
print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for (library, precision, batch, quantize) in sorted(runs, key=lambda k: (k[2], k[1], k[3], k[0])):
    t = torch.get((precision, batch))
    if not t:
        continue
    rows = runs[(library, precision, batch, quantize)]
    ms, mj, tms, tmj = med(rows, 0), med(rows, 1), med(t, 0), med(t, 1)
    speed, energy = ratio(tms, ms), ratio(mj, tmj)
    if precision == "fp16":
        met = energy is not None and energy <= 0.85 and (batch != 64 or speed >= 1.2)
    else:
        met = speed is not None and speed > 1 and energy is not None and energy < 1
    print(f"| {precision} | {quantize or '-'} | {batch} | {library} | {fmt(ms)} | {fmt(tms)} | {fmt(speed, 2)} | {fmt(mj, 2)} | {fmt(tmj, 2)} "
          f"| {fmt(energy, 2)} | {'met' if met else '**not met**'} |")
