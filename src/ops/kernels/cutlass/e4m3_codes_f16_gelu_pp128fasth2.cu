// E4M3 FFN-in (f16 model) -> E4M3 codes with FP8 fast accumulation: gemm_rows.cuh's epilogue with
// CodesE4m3Half2Op (the fitted tanh GELU in f16 pairs, cvt.rn.satfinite.e4m3x2.f16x2) on 128x128
// ping-pong tiles, clusters of 2 along M: without the promotion's second accumulator a 128 x 128
// ping-pong tile fits (as e4m3_f16_pp128fast), the int8 lean kernel's tile.
#include "gemm_rows.cuh"
RUNNER_CUTLASS_GEMM_ROWS_CODES_E4M3_HALF2(e4m3_codes_f16_gelu_pp128fasth2, Epi64x128, Pp128Fast)
