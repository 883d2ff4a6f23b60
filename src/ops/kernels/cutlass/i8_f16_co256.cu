// int8 x int8 -> f16, scales + f32 bias; 128x256 cooperative (many rows). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_f16_co256, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::Identity, Co256)
