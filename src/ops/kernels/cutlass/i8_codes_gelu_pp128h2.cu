// int8 FFN-in -> int8 codes for FFN-out (static per-column steps): i8_codes_gelu_pp128rows's
// kernel (gemm_rows.cuh's epilogue, 64 x 128 subtiles, 128x128 ping-pong, clusters of 2 along M)
// with the fitted tanh GELU evaluated in f16 pairs (CodesHalf2Op: 10.6 SASS instructions a value
// against 13.4), codes rounded to nearest, ties to even, by adding 1536 in f16.
#include "gemm_rows.cuh"
RUNNER_CUTLASS_GEMM_ROWS_CODES_HALF2(i8_codes_gelu_pp128h2, Epi64x128, Pp128)
