// E4M3 x E4M3 -> f16 (f32 accumulation, promoted along K) with the scales, the f16 bias and erf GELU (FFN-in). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_f16_gelu, cutlass::float_e4m3_t, float, cutlass::half_t, cutlass::half_t, true, cutlass::epilogue::thread::GELU, Tile8)
