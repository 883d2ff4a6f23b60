// int8 FFN-in -> f16, scales + f32 bias + GELU (GeluLean: 17 instructions a value); 128x128 cooperative. See gelu_lean.cuh.
#include "gelu_lean.cuh"
RUNNER_CUTLASS_GEMM(i8_f16_gelu_co128lean, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::GeluLean, Co128)
