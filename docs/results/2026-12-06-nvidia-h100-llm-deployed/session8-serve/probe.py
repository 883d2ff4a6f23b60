#!/usr/bin/env python3
"""Host speed probe: every 0.25 s, times a fixed 2-ms-ish piece of pure-Python work on whatever core it lands
on and writes `wall_s,ms` (a slower host CPU shows as a longer time). ~1 % of a core. usage: probe.py OUT STOPFILE"""
import os, sys, time
out, stop = sys.argv[1], sys.argv[2]
f = open(out, "w")
f.write("wall_s,probe_ms\n")
def work():
    x = 0
    for i in range(40000):
        x += i * i
    return x
while not os.path.exists(stop):
    t = time.perf_counter(); work(); ms = (time.perf_counter() - t) * 1e3
    f.write(f"{time.time():.3f},{ms:.4f}\n"); f.flush()
    time.sleep(0.25)
