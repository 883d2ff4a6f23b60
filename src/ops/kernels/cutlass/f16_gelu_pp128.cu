// f16 x f16 -> f16 (f32 accumulation), bias + GELU (fast erf), the float FFN-in; 128x128x64 ping-pong. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(f16_gelu_pp128, cutlass::half_t, float, cutlass::half_t, cutlass::half_t, false, runner_cutlass::GeluErf, Pp128F16)
