"""Where the warps of i8_codes_gelu_pp128tanh wait (call 1's ncu SourceCounters): reads ncu's
`--page source --csv --print-source sass` export (codes-sass.csv, 3 MB, in the part's tar; not
committed) and sums the stall samples of the first profiled launch by region of the SASS, the
regions found by their marker instructions: the consumers' mainloop (IGMMA), their wait for the
epilogue's turn (the TRYWAIT on the order barrier before the epilogue and the branch spinning on
it), the epilogue's column-vector loads (LDG/STS up to the first BAR.SYNC), the epilogue's values
and stores, the producer warp. Then per region the stall reasons and warp instructions a tile.

    python3 stalls.py codes-sass.csv > ncu-codes-stalls.txt
"""
import csv, io, sys, collections

lines = open(sys.argv[1]).read().splitlines()
blocks, cur = [], None
for l in lines:
    if l.startswith('"Kernel Name"'):
        cur = []
        blocks.append(cur)
        continue
    cur.append(l)
rows = list(csv.reader(io.StringIO("\n".join(blocks[0]))))
hdr, data = rows[0], rows[1:]
H = {h: i for i, h in enumerate(hdr)}
stalls = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]
src = [r[1].strip() for r in data]
first = lambda pred, start=0: next(i for i in range(start, len(src)) if pred(src[i]))
ml = first(lambda s: "IGMMA" in s) - 30          # the consumers' k-loop (with its waits)
wait = first(lambda s: "TRYWAIT" in s and "+0x10]" in s, ml)  # order barrier before the epilogue
loads = wait + 2
values = first(lambda s: s.startswith("BAR.SYNC") and "0x80" in s, loads) + 1
end = first(lambda s: s.startswith("DEPBAR.LE SB0, 0x0"), values) + 1
producer = first(lambda s: s.startswith("EXIT"), end) + 1
spin = first(lambda s: "TRYWAIT" in s and "+0x10]" in s, producer)  # the retry loops at the end
regions = [("setup", 0, ml), ("mainloop (consumers)", ml, wait),
           ("wait for the epilogue's turn (order barrier)", wait, loads),
           ("epilogue: column-vector loads + barrier", loads, values),
           ("epilogue: values + stores", values, end), ("tile loop tail", end, producer),
           ("producer + scheduler warps", producer, spin - 20), ("retry loops", spin - 20, len(data))]
S = lambda r: int(r[H["Warp Stall Sampling (All Samples)"]])
tot = sum(S(r) for r in data)
tiles = 8192 // 128 * (3072 // 128)
print(f"{tot} stall samples (all warps), 1 of 3 profiled launches; {tiles} tiles")
for name, a, b in regions:
    c = collections.Counter()
    inst = 0
    for r in data[a:b]:
        for s in stalls:
            v = r[H[s]]
            if v not in ("", "-"):
                c[s[6:]] += int(v)
        inst += int(r[H["Instructions Executed"]] or 0)
    t = sum(c.values()) or 1
    why = ", ".join(f"{k} {100 * v / t:.0f}%" for k, v in c.most_common(5))
    print(f"{name:46s} {sum(S(r) for r in data[a:b]):5d} samples ({100 * sum(S(r) for r in data[a:b]) / tot:4.1f} %)"
          f"  {inst / tiles / 4:7.0f} warp instr a tile a warp  [{why}]")
