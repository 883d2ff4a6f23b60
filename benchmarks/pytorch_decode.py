"""PyTorch reference for the runner's decoder cells (issue 30): Hugging Face transformers with random
weights of a preset's shapes (the same config.json keys as the runner's presets), bf16, on the GPU.

Two ways, each at the cell's shape (batch, prompt, new tokens):
  - compiled: a static KV cache (cache_implementation="static") with the model's forward under
    torch.compile(mode="reduce-overhead", fullgraph=True), the gpt-fast way;
  - plain: generate() as a user types it (dynamic cache, eager).
ms per decode step = (generate(new_tokens) - generate(1)) / (new_tokens - 1), each the median of
several synchronized runs, greedy, EOS ignored (min_new_tokens = max_new_tokens). Time only: no
energy in this first version. Prints CSV lines `pytorch,<preset>,<way>,batch=..,ms_per_step=..`.

    python3 benchmarks/pytorch_decode.py smollm2-135m:1,8 llama-3.2-1b:1
"""
import statistics, sys, time

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
PROMPT, NEW, RUNS = 512, 128, 3


def model_for(preset):
    keys = dict(PRESETS[preset])
    kind = keys.pop("model_type")
    config = transformers.AutoConfig.for_model(kind, **keys)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    return model.eval()


def timed(fn):
    times = []
    for _ in range(RUNS):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def measure(model, batch, static):
    ids = torch.randint(1, model.config.vocab_size - 1, (batch, PROMPT), device="cuda")
    kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
    if static:
        kw["cache_implementation"] = "static"
    gen = lambda n: model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
    with torch.inference_mode():
        gen(NEW)  # warm-up (compiles, captures)
        full = timed(lambda: gen(NEW))
        first = timed(lambda: gen(1))
    return (full - first) / (NEW - 1), first


def main():
    for arg in sys.argv[1:]:
        preset, batches = arg.split(":")
        for way in ["plain", "compiled"]:
            model = model_for(preset)
            if way == "compiled":
                model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
            for batch in [int(b) for b in batches.split(",")]:
                try:
                    t0 = time.perf_counter()
                    step, prefill = measure(model, batch, static=(way == "compiled"))
                    print(f"pytorch,{preset},{way},batch={batch},prompt={PROMPT},steps={NEW},"
                          f"ms_per_step={step:.4f},prefill_plus_first_ms={prefill:.2f},"
                          f"wall_s={time.perf_counter() - t0:.0f}", flush=True)
                except Exception as e:  # report and go on: one failure is not the whole table
                    print(f"pytorch,{preset},{way},batch={batch},error: {type(e).__name__}: {e}"[:400],
                          flush=True)
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
