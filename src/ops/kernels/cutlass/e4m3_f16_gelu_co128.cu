// E4M3 FFN-in -> f16 (promoted along K), scales + f16 bias + GELU (fast erf); 128x128 cooperative. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_f16_gelu_co128, cutlass::float_e4m3_t, float, cutlass::half_t, cutlass::half_t, true, runner_cutlass::GeluErf, Co128)
