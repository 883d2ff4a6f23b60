// int8 FFN-in -> int8 codes for FFN-out (static per-column steps), the lean setting's kernel:
// gemm_rows.cuh's epilogue (scale_w, bias and the steps' inverses in one round trip, 64 x 128
// subtiles: two subtile rounds a tile) computing gemm_codes_lean.cuh's codes (the fitted tanh,
// ties to even by the 1.5 x 2^23 constant); 128x128 ping-pong, clusters of 2 along M.
#include "gemm_rows.cuh"
RUNNER_CUTLASS_GEMM_ROWS_CODES(i8_codes_gelu_pp128rows, Epi64x128, Pp128)
