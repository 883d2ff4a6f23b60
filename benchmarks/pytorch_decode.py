"""PyTorch reference for the runner's decoder cells (issue 30): Hugging Face transformers with random
weights of a preset's shapes (the same config.json keys as the runner's presets), bf16, on the GPU.

Two ways, each at the cell's shape (batch, prompt, new tokens):
  - compiled: a static KV cache (cache_implementation="static"); generate() then compiles the one-token
    decode step with torch.compile(mode="reduce-overhead", fullgraph=True) (CUDA graphs), the gpt-fast
    way; the prefill runs eagerly, as there. The script checks that Dynamo really compiled a graph
    (its unique_graphs counter) and, if generate() did not, compiles model.forward itself and says so;
  - plain: generate() as a user types it (dynamic cache, eager).
Greedy, EOS ignored (min_new_tokens = max_new_tokens). generate(new) and generate(1) are each repeated
over a window of >= --window-s seconds that starts on an NVML energy-counter update (the runner's
energy method: the total-energy counter, gross, idle included), so
  ms per decode step     = (median generate(new) - median generate(1)) / (new - 1)
  mJ per generated token = (E(new) per run - E(1) per run) / ((new - 1) * batch)
Prints CSV lines `pytorch,<preset>,<way>,batch=..,...` and writes JSON lines to --out.

    python3 benchmarks/pytorch_decode.py smollm2-135m:1,8 llama-3.2-1b:1 --out torch.jsonl
    python3 benchmarks/pytorch_decode.py --bandwidth        # HBM copy bandwidth, for the memory floor
    python3 benchmarks/pytorch_decode.py --ways compiled --prefill-only llama-3.2-1b:1,8   # prefill + first token
"""
import argparse, json, statistics, time

import torch
import transformers

PRESETS = {
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                         rope_theta=100000.0, tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         vocab_size=151936, max_position_embeddings=32768, rms_norm_eps=1e-6,
                         rope_theta=1000000.0, tie_word_embeddings=True),
    "llama-3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
                         rope_theta=500000.0, tie_word_embeddings=True,
                         rope_scaling={"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
}

ap = argparse.ArgumentParser()
ap.add_argument("cells", nargs="*", help="preset:batch,batch ...")
ap.add_argument("--ways", default="compiled,plain")
ap.add_argument("--prompt", type=int, default=512)
ap.add_argument("--new", type=int, default=128)
ap.add_argument("--window-s", type=float, default=2.0)
ap.add_argument("--out", default=None)
ap.add_argument("--bandwidth", action="store_true", help="measure device-to-device copy bandwidth")
ap.add_argument("--prefill-only", action="store_true",
                help="only generate(1), the prefill + first token: the compiled way's prefill is eager, so no "
                     "decode step is compiled or measured (the prefill target's reference, without the compile's minutes)")
args = ap.parse_args()
out = open(args.out, "a") if args.out else None


def emit(rec):
    line = ",".join(["pytorch"] + [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in rec.items()])
    print(line, flush=True)
    if out:
        out.write(json.dumps(rec) + "\n")
        out.flush()


try:
    import pynvml as nv
    nv.nvmlInit()
    _handle = nv.nvmlDeviceGetHandleByIndex(0)
    energy_mj = lambda: nv.nvmlDeviceGetTotalEnergyConsumption(_handle)
except Exception as e:  # time is still worth having; the energy columns say why they are empty
    print(f"pytorch,nvml unavailable: {type(e).__name__}: {e}", flush=True)
    energy_mj = None


def wait_tick():
    e0, t = energy_mj(), time.perf_counter()
    while time.perf_counter() - t < 1.0:
        e = energy_mj()
        if e != e0:
            return e
        time.sleep(0.0005)
    raise RuntimeError("NVML energy counter did not update within 1 s")


def window(fn):
    """Runs fn repeatedly for >= window_s (>= 2 runs); returns (median ms, mJ per run or None)."""
    times = []
    torch.cuda.synchronize()
    e0 = wait_tick() if energy_mj else None
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < args.window_s:
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    e1 = energy_mj() if energy_mj else None
    per_run = (e1 - e0) / len(times) if energy_mj else None
    return statistics.median(times), per_run, len(times)


def model_for(preset):
    keys = dict(PRESETS[preset])
    kind = keys.pop("model_type")
    config = transformers.AutoConfig.for_model(kind, **keys)
    torch.manual_seed(0)
    with torch.device("cuda"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        except TypeError:  # transformers before the dtype keyword
            model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    return model.eval()


def unique_graphs():
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


def measure(model, preset, way, batch, extra):
    ids = torch.randint(1, model.config.vocab_size - 1, (batch, args.prompt), device="cuda")
    kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None, **extra)
    gen = lambda n: model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
    if args.prefill_only:
        with torch.inference_mode():
            g0, t = unique_graphs(), time.perf_counter()
            gen(1)  # warm-up: the static cache and the eager prefill's kernels
            gen(1)
            warm_s = time.perf_counter() - t
            first_ms, first_mj, first_runs = window(lambda: gen(1))
            graphs = unique_graphs() - g0
        rec = dict(preset=preset, way=way, batch=batch, prompt=args.prompt, new=1, prefill_only=True,
                   prefill_plus_first_ms=first_ms, runs_first=first_runs, dynamo_graphs=graphs, warmup_s=warm_s)
        if first_mj is not None:
            rec["mj_prefill_plus_first"] = first_mj
        emit(rec)
        return None
    with torch.inference_mode():
        g0 = unique_graphs()
        t = time.perf_counter()
        gen(args.new)  # warm-up: compiles and captures the decode step
        gen(args.new)
        warm_s = time.perf_counter() - t
        graphs = unique_graphs() - g0
        full_ms, full_mj, full_runs = window(lambda: gen(args.new))
        first_ms, first_mj, first_runs = window(lambda: gen(1))
    steps = args.new - 1
    rec = dict(preset=preset, way=way, batch=batch, prompt=args.prompt, new=args.new,
               ms_per_step=(full_ms - first_ms) / steps, prefill_plus_first_ms=first_ms,
               runs_full=full_runs, runs_first=first_runs, dynamo_graphs=graphs, warmup_s=warm_s)
    if full_mj is not None:
        rec["mj_per_token"] = (full_mj - first_mj) / (steps * batch)
        rec["mj_prefill_plus_first"] = first_mj
    emit(rec)
    return graphs


def bandwidth():
    n = 2 * 1024**3 // 2  # 2 GiB of bf16
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    reps, t = 20, time.perf_counter()
    for _ in range(reps):
        b.copy_(a)
    torch.cuda.synchronize()
    secs = (time.perf_counter() - t) / reps
    emit(dict(kind="bandwidth", bytes_moved=2 * a.numel() * 2, gb_per_s=2 * a.numel() * 2 / secs / 1e9,
              device=torch.cuda.get_device_name(0)))
    del a, b
    torch.cuda.empty_cache()


def main():
    emit(dict(kind="setup", torch=torch.__version__, transformers=transformers.__version__,
              device=torch.cuda.get_device_name(0), window_s=args.window_s))
    if args.bandwidth:
        bandwidth()
    for cell in args.cells:
        preset, batches = cell.split(":")
        for way in args.ways.split(","):
            model = model_for(preset)
            extra = {}
            if way == "compiled":
                extra["cache_implementation"] = "static"
                try:
                    from transformers import CompileConfig
                    extra["compile_config"] = CompileConfig(fullgraph=True, mode="reduce-overhead")
                except ImportError:
                    pass
            for batch in [int(b) for b in batches.split(",")]:
                try:
                    graphs = measure(model, preset, way, batch, extra)
                    if way == "compiled" and graphs == 0 and "disable_compile" not in extra and not args.prefill_only:
                        # generate() did not compile: compile the forward ourselves and measure again.
                        print(f"pytorch,{preset},compiled,batch={batch},note=generate did not compile; "
                              "compiling model.forward (reduce-overhead, fullgraph)", flush=True)
                        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
                        extra["disable_compile"] = True
                        measure(model, preset, "compiled-forward", batch, extra)
                except Exception as e:  # report and go on: one failure is not the whole table
                    print(f"pytorch,{preset},{way},batch={batch},error: {type(e).__name__}: {e}"[:400],
                          flush=True)
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
