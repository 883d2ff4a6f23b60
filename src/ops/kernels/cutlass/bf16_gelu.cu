// bf16 x bf16 -> bf16 (f32 accumulation) with the bias and erf GELU (the float precisions' FFN-in). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(bf16_gelu, cutlass::bfloat16_t, float, cutlass::bfloat16_t, cutlass::bfloat16_t, false, cutlass::epilogue::thread::GELU, Tile16)
