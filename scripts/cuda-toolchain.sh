#!/usr/bin/env bash
# Installs a CUDA 13.0 build toolchain from NVIDIA's PyPI wheels, for building the runner with
# `--features cuda` on a machine without a system CUDA toolkit (and even without a GPU).
# Prints the env file to source before cargo.
#
#   bash scripts/cuda-toolchain.sh [DIR]        # DIR defaults to ~/.cache/runner-cuda-13.0
#
# Why each step:
# - cudarc (under candle) reads the CUDA version from `nvcc --version`, so nvcc must be on PATH.
# - 13.0.x: driver 580 (the H100/H200 machines we measure on) is CUDA 13.0; PTX from a newer nvcc
#   can be refused by an older driver.
# - cudarc links -lcuda -lcublas -lcublasLt -lcurand -lnvrtc; the wheels ship only versioned names
#   and no libcuda stub, so DIR/lib gets unversioned links plus a stub libcuda.so (SONAME
#   libcuda.so.1, so the real driver library is the one loaded on the GPU machine).
# - candle-kernels asks nvidia-smi for the compute capability unless CUDA_COMPUTE_CAP is set.
# - The runner's CUTLASS GEMMs (build/cutlass.rs) need CUTLASS's headers: NVIDIA's nvidia-cutlass
#   wheel, pinned, carries them under cutlass_library/source/include (--no-deps: its Python
#   dependencies are for its code generator, which the build does not run).
set -euo pipefail
DIR=${1:-$HOME/.cache/runner-cuda-13.0}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
if [ ! -x "$DIR/venv/bin/pip" ]; then "$PY" -m venv "$DIR/venv"; fi
"$DIR/venv/bin/pip" install -q "cuda-toolkit[nvcc,crt,nvvm,cudart,cublas,curand,nvrtc,cccl]==13.0.2"
"$DIR/venv/bin/pip" install -q --no-deps "nvidia-cutlass==4.2.0.0"
CUTLASS=$("$DIR/venv/bin/python" -c 'import cutlass_library, os; print(os.path.join(os.path.dirname(cutlass_library.__file__), "source", "include"))')
CU13=$("$DIR/venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
mkdir -p "$DIR/lib"
for l in cublas:13 cublasLt:13 curand:10 nvrtc:13 cudart:13; do
  ln -sf "$CU13/lib/lib${l%%:*}.so.${l##*:}" "$DIR/lib/lib${l%%:*}.so"
done
# The stub holds every driver entry point that the cudarc in the cargo registry can reference.
here=$(cd "$(dirname "$0")/.." && pwd)
(cd "$here" && cargo fetch -q)
sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys/mod.rs 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$sys" ]; then
  echo "cuda-toolchain: no cudarc sources in the cargo registry after 'cargo fetch'" >&2
  exit 2
fi
grep -ohE "pub unsafe fn cu[A-Za-z0-9_]+" "$sys" | awk '{print $4}' | sort -u \
  | awk '{print "void " $1 "(void) {}"}' > "$DIR/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$DIR/lib/libcuda.so" "$DIR/libcuda_stub.c"
cat > "$DIR/env.sh" <<ENV
export PATH="$CU13/bin:\$PATH"
export CUDA_ROOT="$DIR"
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
export CUTLASS_INCLUDE="\${CUTLASS_INCLUDE:-$CUTLASS}"
ENV
echo "$DIR/env.sh"
