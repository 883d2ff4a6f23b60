// int8 FFN-in -> f16, scales + f32 bias + GELU with CUDA's erff (the first build's kernel, kept to time the erf against); 128x128 ping-pong. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_f16_gelu_pp128erff, int8_t, int32_t, cutlass::half_t, float, true, cutlass::epilogue::thread::GELU, Pp128)
