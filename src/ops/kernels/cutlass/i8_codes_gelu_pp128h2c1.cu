// i8_codes_gelu_pp128h2 without clusters (no multicast of the weight tile: no CTA waits on its
// pair's free stage), the fitted tanh GELU in f16 pairs as there; a tactic candidate beside it.
#include "gemm_rows.cuh"
RUNNER_CUTLASS_GEMM_ROWS_CODES_HALF2(i8_codes_gelu_pp128h2c1, Epi64x128, Pp128C1)
