// int8 x int8 -> bf16, scales + f32 bias; 128x128 ping-pong. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_bf16_pp128, int8_t, int32_t, cutlass::bfloat16_t, float, true, runner_cutlass::Identity, Pp128)
