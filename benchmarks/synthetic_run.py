#!/usr/bin/env python3
"""Builds a synthetic run directory of N cells from a real one, for timing `runner report`.

Each synthetic cell is a copy of one of the template's records (cycled), under a new model name
(m000, m001, ...: one per pass over the template) and a new 12-hex-digit id, with the template
cell's power trace copied beside it. The records keep their real windows, energies and traces,
so post-processing and rendering do the same work per cell as on a real GPU run.

    python3 benchmarks/synthetic_run.py TEMPLATE_RUN_DIR OUT_DIR N
"""
import hashlib
import json
import os
import shutil
import sys


def main() -> None:
    template, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(os.path.join(template, "manifest.json")) as f:
        manifest = json.load(f)
    records = []
    for cell in manifest["plan"]:
        with open(os.path.join(template, "cells", cell["id"] + ".json")) as f:
            records.append(json.load(f))
    os.makedirs(os.path.join(out, "cells"), exist_ok=True)
    os.makedirs(os.path.join(out, "traces"), exist_ok=True)
    plan = []
    for i in range(n):
        record = json.loads(json.dumps(records[i % len(records)]))
        old_id = record["cell"]["id"]
        new_id = hashlib.sha256(f"synthetic-{i}".encode()).hexdigest()[:12]
        record["cell"]["id"] = new_id
        record["cell"]["model"] = f"m{i // len(records):03d}"
        if record.get("reconciliation"):
            record["reconciliation"] = None
        plan.append(record["cell"])
        with open(os.path.join(out, "cells", new_id + ".json"), "w") as f:
            json.dump(record, f)
        trace = os.path.join(template, "traces", old_id + ".csv")
        if os.path.exists(trace):
            shutil.copyfile(trace, os.path.join(out, "traces", new_id + ".csv"))
    manifest["plan"] = plan
    manifest["run_id"] = os.path.basename(os.path.normpath(out))
    manifest["experiment"] = "synthetic"
    manifest["description"] = f"{n} synthetic cells copied from {template}"
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    print(f"{n} cells in {out}")


if __name__ == "__main__":
    main()
