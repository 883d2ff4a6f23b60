#!/usr/bin/env bash
# Builds what benchmarks/cutlass_gpu.sh runs on the GPU machine (which has no cargo): the CUDA
# runner and examples/cutlass_check with the CUTLASS GEMMs, stripped and xz-compressed into
# .cuda-bin/cutlass/ (git-ignored; about 16 MB together, under the 64 MiB a device call carries).
#
#   bash benchmarks/cutlass_build.sh
#
# Then, in one device call (carry .cuda-bin/cutlass):
#   bash benchmarks/cutlass_gpu.sh $OUT .cuda-bin/cutlass
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-cuda.sh
# The same environment as scripts/build-cuda.sh, so the example links the same CUTLASS objects
# (target/cuda/cutlass/) instead of compiling them again.
# shellcheck disable=SC1090
source "${RUNNER_CUDA_DIR:-$HOME/.cache/runner-cuda-13.0}/env.sh"
export RUNNER_CUTLASS_BUILD_DIR=${RUNNER_CUTLASS_BUILD_DIR:-$PWD/target/cuda/cutlass}
cargo build --release --features cuda --target-dir target/cuda --example cutlass_check
mkdir -p .cuda-bin/cutlass
for b in release/runner release/examples/cutlass_check; do
    name=$(basename "$b")
    strip -o ".cuda-bin/cutlass/$name" "target/cuda/$b"
    xz -f -6 ".cuda-bin/cutlass/$name"
done
# Each GEMM kernel's stack frame and registers from ptxas (build/cutlass.rs keeps its output beside
# the object): a spill needs stack, and none is wanted (E4M3's first ping-pong kernels had 280 bytes).
for object in target/cuda/cutlass/*.o; do
    log=${object%.o}.log
    printf '%-28s %s\n' "$(basename "$object" .o)" "$(grep -A3 "Function properties for _ZN7cutlass13device_kernel" "$log" \
        | grep -oE "[0-9]+ bytes stack frame|Used [0-9]+ registers" | paste -sd, -)"
done | tee .cuda-bin/cutlass/resources.txt
ls -l .cuda-bin/cutlass/
echo "cutlass_build: next, in one device call carrying .cuda-bin/cutlass: bash benchmarks/cutlass_gpu.sh \$OUT .cuda-bin/cutlass"
