"""Σ layers against the whole model, from a run directory's records (cells/*.json), both ways.

    python3 benchmarks/reconcile_layers.py RUN_DIR [RUN_DIR ...]

For each layers cell: Σ of the top-level layers measured alone (per call, loop / K) over the
whole-model cell of the same settings, in energy per inference and latency per batch; and the
longest prefix (the whole forward pass, measured inside the layers cell) over the same whole-model
cell: the floor any reconciliation has, the same pass measured at another time on another batch.
Medians of per-window values, as the runner's reports (no intervals here: see report.md).
"""
import json,glob,statistics as st,sys,os
def med(ws,batch,kind,k=1):
    vals=[]
    for w in ws:
        if kind=='lat': vals.append(st.median(w['loop_ms'])/k)
        else: vals.append(w['energy_j']*1e3/(w['loops']*k*batch))
    return st.median(vals)
def run(d):
    cells=[json.load(open(f)) for f in glob.glob(d+'/cells/*.json')]
    out=[]
    for c in cells:
        if c['cell']['scope']!='layers' or c['status']!='ok': continue
        cc=c['cell']; b=cc['batch_size']
        whole=[x for x in cells if x['cell']['scope']=='model' and x['cell']['precision']==cc['precision'] and x['cell']['batch_size']==b and x['cell'].get('quantize','all')==cc.get('quantize','all')]
        w=whole[0]
        res={}
        for kind in ['lat','en']:
            W=med(w['windows'],b,kind)
            iso=sum(med(l['windows'],b,kind,l.get('calls_per_loop',1)) for l in c['layers'] if l.get('parent') is None)
            pre=sorted(c['prefixes'],key=lambda p:p['layers'])
            P=med(pre[-1]['windows'],b,kind,pre[-1].get('calls_per_loop',1)) if pre else float('nan')
            res[kind]=(iso/W,P/W)
        ks=[l.get('calls_per_loop',1) for l in c['layers'] if l.get('parent') is None]
        out.append((cc['precision'],b,res,ks))
    return out
for d in sys.argv[1:]:
    for p,b,res,ks in run(d):
        print(f"{os.path.basename(d):28s} {p:10s} b{b}: isolated Σ/whole energy {res['en'][0]*100:.1f}% latency {res['lat'][0]*100:.1f}%; prefix(whole-in-cell)/whole energy {res['en'][1]*100:.1f}% latency {res['lat'][1]*100:.1f}%; K {ks}")
