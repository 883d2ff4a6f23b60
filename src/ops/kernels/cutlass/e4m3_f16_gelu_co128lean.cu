// E4M3 FFN-in -> f16 (promoted along K), scales + f16 bias + GELU (GeluLean); 128x128 cooperative. See gelu_lean.cuh.
#include "gelu_lean.cuh"
RUNNER_CUTLASS_GEMM(e4m3_f16_gelu_co128lean, cutlass::float_e4m3_t, float, cutlass::half_t, cutlass::half_t, true, runner_cutlass::GeluLean, Co128)
