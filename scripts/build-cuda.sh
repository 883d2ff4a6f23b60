#!/usr/bin/env bash
# Builds the CUDA runner: `target/cuda/release/runner` with `--features cuda`, then a stripped, gzipped
# copy in .cuda-bin/runner.gz (git-ignored) to carry to a GPU machine that has no cargo.
#
#   bash scripts/build-cuda.sh
#
# With a system CUDA 13 toolkit (nvcc on PATH) it uses that. Otherwise it installs NVIDIA's
# toolkit wheels from PyPI once (scripts/cuda-toolchain.sh, ~1.2 GB in ~/.cache) and uses those.
# CUDA_COMPUTE_CAP picks the GPU generation of candle's kernels (default 90: H100/H200).
# CUTLASS_INCLUDE (set by the toolchain; with a system toolkit, point it at CUTLASS 4.2's include/)
# adds the runner's CUTLASS GEMMs for Hopper; without it they are left out and cuBLASLt runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvcc >/dev/null 2>&1 && nvcc --version | grep -q "release 13\."; then
  echo "build-cuda: using the system CUDA toolkit ($(command -v nvcc))"
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
else
  env_file=${RUNNER_CUDA_DIR:-$HOME/.cache/runner-cuda-13.0}/env.sh
  # An env file from before the CUTLASS headers were part of the toolchain gets them added.
  if [ ! -f "$env_file" ] || ! grep -q CUTLASS_INCLUDE "$env_file"; then
    echo "build-cuda: no CUDA 13 nvcc on PATH; installing the toolkit and CUTLASS wheels (once)"
    bash scripts/cuda-toolchain.sh "$(dirname "$env_file")" >/dev/null
  fi
  # shellcheck disable=SC1090
  source "$env_file"
fi
# A separate target dir keeps the CPU build (and `cargo test`) from being rebuilt each time; the
# CUTLASS objects (a CPU-minute each) are kept beside it, outside cargo's OUT_DIR.
export RUNNER_CUTLASS_BUILD_DIR=${RUNNER_CUTLASS_BUILD_DIR:-$PWD/target/cuda/cutlass}
cargo build --release --features cuda --target-dir target/cuda
mkdir -p .cuda-bin
strip -o .cuda-bin/runner target/cuda/release/runner
gzip -f -9 .cuda-bin/runner
ls -l .cuda-bin/runner.gz
echo "build-cuda: on the GPU machine: gunzip -c .cuda-bin/runner.gz > runner && chmod +x runner && ./runner experiments/quantization_sweep.toml"
