"""Where a forward's time goes, from benchmarks/cutlass_short_gpu.sh's ncu step: OUT holds
ncu-<precision>-<library>-<batch>.csv and .log, the program's output and ncu's (its CSV report of
`ncu --metrics gpu__time_duration.sum --csv --print-units base --log-file ...`) over `cutlass_check --profile PRECISION LIBRARY BATCH` (two eager forwards of
DistilBERT-base, seq 128, between cuProfilerStart/Stop; the same forward replayed as a CUDA graph
is timed after them and its line is in the same file). Prints, per configuration, the kernels
grouped by what they are (us per forward, share of the kernel time), then the kernels of the
second forward in order.

    python3 benchmarks/ncu_profile.py OUT > profile.md

`--timeline CSV...`: instead, the runner's own cells under `ncu --graph-profiling node` (a log of
every profiled kernel in launch order, several forwards): the last complete forward (embedding
kernel to embedding kernel), each encoder block's kernels by position, averaged over the blocks.

    python3 benchmarks/ncu_profile.py --timeline timeline-int8-fp16-b64.csv > profile.md
"""
import csv, glob, os, re, sys
from collections import OrderedDict

out = sys.argv[1]


def label(name):
    """A short name: the runner's and candle's kernels by function name; CUTLASS's by inputs,
    epilogue, schedule and tile; cuBLAS's by their own (truncated)."""
    if "cutlass" in name and ("device_kernel" in name or "GemmUniversal" in name):
        inputs = "E4M3" if "e4m3" in name else "int8" if ("int8_t" in name or "signed char" in name) \
            else "bf16" if "bfloat16" in name else "f16"
        # A codes kernel's op may also name the erf GELU: one label either way.
        gelu = " +GELU codes" if "Codes" in name else " +GELU" if "GeluErf" in name else ""
        sched = " coop" if "Cooperative" in name else " ping-pong" if "Pingpong" in name else ""
        fast = " fastacc" if "FastAccum" in name else ""
        # The cluster shape (1-4 a side) comes before the tile (64 and up) in the name.
        shapes = re.findall(r"(?:Shape|tuple)<cute::C<(\d+)>, cute::C<(\d+)>, cute::C<(\d+)>>", name)
        tile = next((t for t in shapes if int(t[0]) >= 16), None)
        tile = f" {tile[0]}x{tile[1]}x{tile[2]}" if tile else ""
        return f"CUTLASS {inputs}{gelu}{sched}{fast}{tile}"
    base = re.sub(r"^void ", "", name).split("(")[0]
    base = re.sub(r"<.*", "", base)
    if re.search(r"gemm|nvjet|xmma|cublas|sm90_", base, re.I):
        return "cuBLAS " + base[:48]
    return base[:64]


def load(path):
    rows, notes = [], []
    # With --log-file, ncu writes its report (the CSV) there; the program's own lines stay in the
    # .csv file the call redirects its stdout to. Both are read.
    lines = open(path, errors="replace").read().splitlines()
    log = path[:-4] + ".log"
    if os.path.exists(log):
        lines += open(log, errors="replace").read().splitlines()
    notes = [l for l in lines if l.startswith("profile ")]
    data = [l for l in lines if l.startswith('"')]
    for r in csv.DictReader(data):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        try:
            ns = float(r["Metric Value"].replace(",", ""))
        except ValueError:
            continue
        rows.append((int(r["ID"]), r["Kernel Name"], ns / 1e3, r.get("Grid Size", ""), r.get("Block Size", "")))
    rows.sort()
    return rows, notes


def timeline(path):
    """One forward of a runner cell's ncu log, per block position (see the module's docstring)."""
    rows, _ = load(path)
    starts = [n for n, r in enumerate(rows) if "embed" in label(r[1])]
    fwd = rows[starts[-2]:starts[-1]] if len(starts) > 1 else rows[(starts or [0])[-1]:]
    # A block starts with the Q/K/V GEMM, the kernel before each attention.
    att = [n for n, r in enumerate(fwd) if "attention" in label(r[1])]
    blocks = [fwd[a - 1:b - 1] for a, b in zip(att, att[1:] + [len(fwd) + 1])]
    total = sum(r[2] for r in fwd)
    print(f"## {os.path.basename(path)}\n")
    print(f"{len(fwd)} kernels a forward, {total:.1f} us of kernel time; {len(blocks)} blocks\n")
    print("| position in a block | kernel | grid | us (mean over blocks) | min | max |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    width = min((len(b) for b in blocks), default=0)
    for j in range(width):
        us = [b[j][2] for b in blocks]
        print(f"| {j} | {label(blocks[0][j][1])} | {blocks[0][j][3]} | {sum(us) / len(us):.1f} | {min(us):.1f} | {max(us):.1f} |")
    outside = total - sum(r[2] for b in blocks for r in b[:width])
    print(f"\nOutside the blocks' first {width} positions (embedding, the last norm, the head): {outside:.1f} us\n")


if len(sys.argv) > 2 and sys.argv[1] == "--timeline":
    for path in sys.argv[2:]:
        timeline(path)
    sys.exit(0)

files = sorted(glob.glob(os.path.join(out, "ncu-*.csv")))
if not files:
    print("no ncu CSV in", out)
for path in files:
    cfg = os.path.basename(path)[4:-4]
    rows, notes = load(path)
    print(f"## {cfg}\n")
    for n in notes:
        print(f"- {n}")
    if not rows:
        tail = open(path, errors="replace").read()[-800:]
        print(f"\nno kernel timings (ncu output's end):\n\n```\n{tail}\n```\n")
        continue
    per = len(rows) // 2
    total = sum(r[2] for r in rows) / 2
    print(f"\n{len(rows)} kernels in 2 forwards ({per} a forward), {total:.1f} us of kernel time a forward\n")
    groups = OrderedDict()
    for _, name, us, _, _ in rows:
        g = groups.setdefault(label(name), [0, 0.0])
        g[0] += 1
        g[1] += us
    print("| kernel | calls a forward | us a forward | share | us a call |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k, (n, us) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"| {k} | {n / 2:g} | {us / 2:.1f} | {100 * us / 2 / total:.1f} % | {us / n:.2f} |")
    print(f"\nThe second forward in order (us, grid, block):\n\n```")
    for _, name, us, grid, block in rows[per:]:
        print(f"{us:9.2f}  {label(name):<56} {grid:>14} {block:>12}")
    print("```\n")
