"""Issue 30's ratio table: the runner's own decoder (plain and fused decode kernels) against PyTorch's
compiled static-cache decode step measured in the same device call, and Llama-3.2-1B's memory floor;
and the prefill (prompt + the first token's argmax) against PyTorch's generate(1) on the compiled
model (its prefill runs eagerly, as gpt-fast's does; generate()'s own host work included).

Reads PyTorch's JSON lines (benchmarks/pytorch_decode.py --out) and the runner's summary.csv files (one or
more run folders of experiments/llm_own_fused.toml); writes ratios.csv and prints the table. A runner
model named "<preset>-fused" ran decode_kernels = "fused", "<preset>-gemv" decode_kernels = "gemv" (the decode
GEMV with the norms, SwiGLU and residual adds folded in), "<preset>-gemv-pdl" the same with Programmatic
Dependent Launch between the step's kernels, "<preset>-gemv-bulk" gemv-pdl with its GEMVs' weights streamed by
TMA bulk copies and the attention's wide merge, "<preset>-gemv-fold" gemv-pdl in 5 launches a layer (rotary +
KV write folded into the attention, SwiGLU into the gate|up GEMV), "<preset>-gemv-cluster" gemv-fold with its attention's splits merged in a thread-block
cluster and the o/down GEMVs' loads batched, "<preset>-gemv-lean" gemv-cluster with the Q|K|V and gate|up
GEMVs' loads batched too and the step's tail after the lm_head in one launch, "<preset>-flash" the fused decode kernels with prefill_attention =
"flash" (experiments/llm_own_prefill.toml); "<preset>" the plain kernels. `best` marks the fastest
runner way of each (preset, batch); `floor_met` is Llama-3.2-1B b1's target (<= 1.5x its memory floor).

    python3 benchmarks/decode_ratios.py torch.jsonl run-a/summary.csv run-b/summary.csv --out ratios.csv
"""
import argparse, csv, json

# (hidden, intermediate, layers, heads, kv_heads, head_dim, vocab): the presets of pytorch_decode.py.
SHAPES = {
    "smollm2-135m": (576, 1536, 30, 9, 3, 64, 49152),
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2, 64, 151936),
    "llama-3.2-1b": (2048, 8192, 16, 32, 8, 64, 128256),
}
# decode_kernels of a runner model named "<preset>-<kernels>" (no suffix: plain).
KERNELS = ("fused", "gemv-pdl", "gemv-bulk", "gemv-fold", "gemv-cluster", "gemv-lean", "gemv", "flash")
TIME_TARGET, ENERGY_TARGET, FLOOR_TARGET, PREFILL_TARGET = 0.8, 0.85, 1.5, 1.0


def weight_bytes(preset, qkv_bias, dtype_bytes=2):
    """Every weight read once a step (tied embeddings: the output projection reads the embedding)."""
    h, i, layers, heads, kv, d, vocab = SHAPES[preset]
    per_layer = h * heads * d * 2 + h * kv * d * 2 + 3 * h * i + 2 * h
    if qkv_bias:
        per_layer += (heads + 2 * kv) * d
    return (vocab * h + layers * per_layer + h) * dtype_bytes


def kv_bytes(preset, batch, positions, dtype_bytes=2):
    h, i, layers, heads, kv, d, vocab = SHAPES[preset]
    return layers * 2 * batch * kv * positions * d * dtype_bytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torch")
    ap.add_argument("summaries", nargs="+")
    ap.add_argument("--out", default="ratios.csv")
    args = ap.parse_args()
    torch, bandwidth = {}, None
    for line in open(args.torch):
        r = json.loads(line)
        if r.get("kind") == "bandwidth":
            bandwidth = r["gb_per_s"]
        elif r.get("way") == "compiled" and "ms_per_step" in r:
            torch[(r["preset"], int(r["batch"]))] = r
    runner = {}
    for path in args.summaries:
        try:
            rows = list(csv.DictReader(open(path)))
        except OSError:
            continue
        for row in rows:
            if row.get("status") != "ok" or not row.get("decode_ms_per_step"):
                continue
            model = row["model"]
            kernels = next((k for k in KERNELS if model.endswith("-" + k)), "plain")
            preset = model[: -len(kernels) - 1] if kernels != "plain" else model
            runner[(preset, int(row["batch_size"]), kernels)] = row
    out = []
    for (preset, batch, kernels), row in sorted(runner.items()):
        ms, mj = float(row["decode_ms_per_step"]), float(row["decode_mj_per_token"])
        t = torch.get((preset, batch))
        rec = dict(preset=preset, batch=batch, kernels=kernels, runner_ms_per_step=ms, runner_mj_per_token=mj,
                   pytorch_ms_per_step=t["ms_per_step"] if t else "", pytorch_mj_per_token=t["mj_per_token"] if t else "")
        if t:
            rec["time_ratio"] = ms / t["ms_per_step"]
            rec["energy_ratio"] = mj / t["mj_per_token"]
            rec["time_met"] = rec["time_ratio"] <= TIME_TARGET
            rec["energy_met"] = rec["energy_ratio"] <= ENERGY_TARGET
        if t and row.get("prefill_ms") and t.get("prefill_plus_first_ms"):
            rec["runner_prefill_ms"] = float(row["prefill_ms"])
            rec["pytorch_prefill_plus_first_ms"] = t["prefill_plus_first_ms"]
            rec["prefill_ratio"] = rec["runner_prefill_ms"] / t["prefill_plus_first_ms"]
            rec["prefill_met"] = rec["prefill_ratio"] <= PREFILL_TARGET
        if bandwidth:
            # The floor: every weight and the whole preallocated KV cache (prompt + new positions) read
            # once per step, at the copy bandwidth measured in the same call.
            positions = int(row["prompt_len"]) + int(row["new_tokens"])
            moved = weight_bytes(preset, preset.startswith("qwen")) + kv_bytes(preset, batch, positions)
            rec["floor_ms"] = moved / (bandwidth * 1e9) * 1e3
            rec["x_floor"] = ms / rec["floor_ms"]
        out.append(rec)
    fastest = {}
    for rec in out:
        key = (rec["preset"], rec["batch"])
        fastest[key] = min(fastest.get(key, float("inf")), rec["runner_ms_per_step"])
    for rec in out:
        rec["best"] = rec["runner_ms_per_step"] == fastest[(rec["preset"], rec["batch"])]
        if rec["preset"] == "llama-3.2-1b" and rec["batch"] == 1 and "x_floor" in rec:
            rec["floor_met"] = rec["x_floor"] <= FLOOR_TARGET
    keys = ["preset", "batch", "kernels", "best", "runner_ms_per_step", "pytorch_ms_per_step", "time_ratio", "time_met",
            "runner_mj_per_token", "pytorch_mj_per_token", "energy_ratio", "energy_met", "floor_ms", "x_floor",
            "floor_met", "runner_prefill_ms", "pytorch_prefill_plus_first_ms", "prefill_ratio", "prefill_met"]
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for rec in out:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in rec.items()})
    print(f"bandwidth {bandwidth} GB/s; targets: time <= {TIME_TARGET}x, energy <= {ENERGY_TARGET}x, "
          f"Llama-3.2-1B b1 <= {FLOOR_TARGET}x its floor, prefill <= {PREFILL_TARGET}x PyTorch's")
    for rec in out:
        fmt = lambda k, p=3: f"{rec[k]:.{p}f}" if isinstance(rec.get(k), float) else "-"
        best = " (best)" if rec["best"] else ""
        print(f"{rec['preset']:>13} b{rec['batch']} {rec['kernels']:>8}{best}: {fmt('runner_ms_per_step')} ms/step "
              f"(PyTorch {fmt('pytorch_ms_per_step')}, ratio {fmt('time_ratio')}), {fmt('runner_mj_per_token', 1)} "
              f"mJ/token (PyTorch {fmt('pytorch_mj_per_token', 1)}, ratio {fmt('energy_ratio')}), "
              f"{fmt('x_floor', 2)}x the floor {fmt('floor_ms')} ms; prefill {fmt('runner_prefill_ms')} ms "
              f"(PyTorch {fmt('pytorch_prefill_plus_first_ms')}, ratio {fmt('prefill_ratio')})")


if __name__ == "__main__":
    main()
