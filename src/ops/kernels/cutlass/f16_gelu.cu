// f16 x f16 -> f16 (f32 accumulation) with the bias and erf GELU (the float precisions' FFN-in). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(f16_gelu, cutlass::half_t, float, cutlass::half_t, cutlass::half_t, false, cutlass::epilogue::thread::GELU, Tile16)
