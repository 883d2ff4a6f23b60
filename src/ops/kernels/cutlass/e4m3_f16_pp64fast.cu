// E4M3 x E4M3 -> f16 with FP8 fast accumulation, scales + f16 bias; 64x128 ping-pong, clusters along N (few rows). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_f16_pp64fast, cutlass::float_e4m3_t, float, cutlass::half_t, cutlass::half_t, true, runner_cutlass::Identity, Pp64Fast)
