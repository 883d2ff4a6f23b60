#!/usr/bin/env python3
"""Host monitor beside one runner process: every PERIOD s, the machine's CPU times (steal
included), the load, and each runner thread's CPU time, core and context switches.
usage: monitor.py PID OUT.csv [PERIOD]"""
import os, sys, time
pid, out = int(sys.argv[1]), sys.argv[2]
period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
tick = os.sysconf("SC_CLK_TCK")
f = open(out, "w")
f.write("wall_s,kind,tid,name,state,cpu,utime_s,stime_s,vol_cs,invol_cs,extra\n")
def stat_line():
    with open("/proc/stat") as s:
        return s.readline().split()[1:]
while os.path.exists(f"/proc/{pid}"):
    t = time.time()
    try:
        f.write(f"{t:.3f},host,,,,,,,,,{' '.join(stat_line())}|{open('/proc/loadavg').read().strip()}\n")
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                st = open(f"/proc/{pid}/task/{tid}/stat").read()
                name = st[st.index("(") + 1:st.rindex(")")]
                rest = st[st.rindex(")") + 2:].split()
                state, ut, stt, cpu = rest[0], int(rest[11]) / tick, int(rest[12]) / tick, rest[36]
                vol = inv = ""
                for line in open(f"/proc/{pid}/task/{tid}/status"):
                    if line.startswith("voluntary_ctxt"): vol = line.split()[1]
                    elif line.startswith("nonvoluntary_ctxt"): inv = line.split()[1]
                f.write(f"{t:.3f},thread,{tid},{name.replace(',', ' ')},{state},{cpu},{ut:.2f},{stt:.2f},{vol},{inv},\n")
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
    except (FileNotFoundError, ProcessLookupError):
        break
    f.flush()
    time.sleep(max(0.0, period - (time.time() - t)))
