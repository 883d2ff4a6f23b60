// int8 FFN-in -> int8 codes for FFN-out (static per-column steps): the fitted tanh GELU and the
// steps in one epilogue node, the codes rounded to nearest with ties to even by the 1.5 x 2^23
// constant (gemm_codes_lean.cuh), CUTLASS's epilogue otherwise (three row broadcasts, 64 x 64
// subtiles); 128x128 ping-pong. A tactic candidate of i8_codes_gelu_pp128rows, which adds
// gemm_rows.cuh's loads and subtiles to the same numbers.
#include "gemm_codes_lean.cuh"
RUNNER_CUTLASS_GEMM_CODES_LEAN(i8_codes_gelu_pp128rne, cutlass::epilogue::collective::EpilogueTileAuto, Pp128)
