// bf16 x bf16 -> bf16 (f32 accumulation), bias + GELU (fast erf), the float FFN-in; 128x128x64 ping-pong. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(bf16_gelu_pp128, cutlass::bfloat16_t, float, cutlass::bfloat16_t, cutlass::bfloat16_t, false, runner_cutlass::GeluErf, Pp128F16)
