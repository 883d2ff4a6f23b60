"""PyTorch reference for the runner's DistilBERT cells: eager fp32/fp16/bf16 at the given batch sizes,
seq 128, random weights (Hugging Face's DistilBertForSequenceClassification, default config).

Same method as the runner: latency = median over loops of one forward pass followed by a synchronize;
energy = NVML total-energy counter over a window of >= --window-s seconds that starts on a counter
update, divided by the samples processed (gross, idle included).

Runs on the GPU machine (its python3 has torch, transformers and nvidia-ml-py):
    python3 benchmarks/pytorch_reference.py OUT.jsonl --batch-sizes 1,8,16,32,64

--w8a8-precisions int8-fp16,fp8-fp16 adds PyTorch's own W8A8 (benchmarks/pytorch_w8a8.py: the six
blocks' linears through torch._int_mm / torch._scaled_mm, head in fp16) under each compile mode.
"""
import argparse, json, time

import pynvml as nv
import torch
import transformers
from transformers import DistilBertConfig, DistilBertForSequenceClassification

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--batch-sizes", default="1,8,16,32,64")
ap.add_argument("--precisions", default="fp32,fp16,bf16")
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--window-s", type=float, default=3.0)
ap.add_argument("--latency-loops", type=int, default=100)
ap.add_argument("--compile-precisions", default="",
                help="also measure torch.compile in these precisions, e.g. fp16,bf16")
ap.add_argument("--w8a8-precisions", default="",
                help="PyTorch W8A8 (int8-fp16, fp8-fp16) on the blocks' linears, under the compile modes")
ap.add_argument("--compile-modes", default="default,reduce-overhead",
                help="torch.compile modes to measure; reduce-overhead replays Inductor's kernels as CUDA graphs")
args = ap.parse_args()

nv.nvmlInit()
handle = nv.nvmlDeviceGetHandleByIndex(0)
energy_mj = lambda: nv.nvmlDeviceGetTotalEnergyConsumption(handle)
out = open(args.out, "w")


def emit(rec):
    print("RESULT", json.dumps(rec), flush=True)
    out.write(json.dumps(rec) + "\n")
    out.flush()


def wait_tick():
    e0, t = energy_mj(), time.perf_counter()
    while time.perf_counter() - t < 1.0:
        e = energy_mj()
        if e != e0:
            return e
        time.sleep(0.0005)
    raise RuntimeError("NVML energy counter did not update within 1 s")


torch.manual_seed(0)
dev = torch.device("cuda")
cfg = DistilBertConfig()
base = DistilBertForSequenceClassification(cfg).eval()
emit({"kind": "setup", "torch": torch.__version__, "transformers": transformers.__version__,
      "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0),
      "attn_impl": getattr(base.config, "_attn_implementation", None)})
dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

def measure(kind, precision, model, batch):
    ids = torch.randint(0, cfg.vocab_size, (batch, args.seq_len), device=dev)
    mask = torch.ones(batch, args.seq_len, dtype=torch.long, device=dev)
    run = lambda: model(input_ids=ids, attention_mask=mask).logits
    with torch.inference_mode():
        t = time.perf_counter()
        run()  # the first call compiles under torch.compile
        torch.cuda.synchronize()
        first_s = time.perf_counter() - t
        for _ in range(10):
            run()
        torch.cuda.synchronize()
        lat = []
        for _ in range(args.latency_loops):
            t = time.perf_counter()
            run()
            torch.cuda.synchronize()
            lat.append((time.perf_counter() - t) * 1e3)
        lat.sort()
        e0 = wait_tick()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.window_s:
            run()
            torch.cuda.synchronize()
            n += 1
        secs = time.perf_counter() - t0
        e1 = energy_mj()
    emit({"kind": kind, "precision": precision, "batch_size": batch, "seq_len": args.seq_len,
          "first_call_s": first_s,
          "latency_ms_median": lat[len(lat) // 2], "latency_ms_p10": lat[len(lat) // 10],
          "latency_ms_p90": lat[(9 * len(lat)) // 10], "window_s": secs, "window_loops": n,
          "energy_per_inference_mj": (e1 - e0) / (n * batch), "avg_power_w": (e1 - e0) / 1e3 / secs})


# One kind per (mode): "torch_compile" is the default mode (as in earlier rounds' files),
# "torch_compile_reduce_overhead" and so on the others.
kind_of = lambda mode: "torch_compile" if mode == "default" else "torch_compile_" + mode.replace("-", "_")
plans = [("torch_eager", None, p) for p in args.precisions.split(",") if p]
plans += [(kind_of(m), m, p) for p in args.compile_precisions.split(",") if p
          for m in args.compile_modes.split(",") if m]
plans += [(kind_of(m), m, p) for p in args.w8a8_precisions.split(",") if p
          for m in args.compile_modes.split(",") if m]
for kind, mode, precision in plans:
    model = DistilBertForSequenceClassification(cfg).eval()
    model.load_state_dict(base.state_dict())
    model = model.to(dev, dtypes[precision.split("-")[-1]])
    if "-" in precision:  # int8-fp16, fp8-fp16: PyTorch's W8A8 on the blocks' linears
        from pytorch_w8a8 import W8A8Linear, quantize_blocks
        n = quantize_blocks(model, precision.split("-")[0])
        emit({"kind": "setup_w8a8", "precision": precision, "linears": n,
              "fp8_form": W8A8Linear.fp8_form})
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        if mode is None:
            measure(kind, precision, model, batch)
        else:
            # A fresh static-shape compile per batch size, as a deployment for that shape would
            # be (a second shape would otherwise switch Inductor to dynamic-shape kernels).
            torch._dynamo.reset()
            compiled = torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)
            measure(kind, precision, compiled, batch)
            del compiled
    del model
    torch.cuda.empty_cache()
emit({"kind": "done"})
# Leave without waiting for Inductor's compile workers: on the 2026-12-06 H100 call the process
# printed every cell and "done", then sat until its 90 s timeout (exit 124) on their shutdown.
import os, sys
sys.stdout.flush()
os._exit(0)
