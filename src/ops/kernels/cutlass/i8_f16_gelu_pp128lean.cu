// int8 FFN-in -> f16, scales + f32 bias + GELU (GeluLean); 128x128 ping-pong. See gelu_lean.cuh.
#include "gelu_lean.cuh"
RUNNER_CUTLASS_GEMM(i8_f16_gelu_pp128lean, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::GeluLean, Pp128)
