// f16 x f16 -> f16 (f32 accumulation), bias + GELU (GeluLean), the float FFN-in; 128x128x64 cooperative. See gelu_lean.cuh.
#include "gelu_lean.cuh"
RUNNER_CUTLASS_GEMM(f16_gelu_co128lean, cutlass::half_t, float, cutlass::half_t, cutlass::half_t, false, runner_cutlass::GeluLean, Co128F16)
