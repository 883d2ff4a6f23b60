// int8 x int8 -> f16, per-token x per-channel scales + the f32 bias: gemm.cuh's numbers, with
// the same bits, through gemm_rows.cuh's epilogue (scale_w and bias in one round trip, 64 x 64
// subtiles: four subtile rounds a tile against CUTLASS's eight of 64 x 32); 128x128 ping-pong,
// clusters of 2 along M. A tactic candidate of i8_f16_pp128.
#include "gemm_rows.cuh"
RUNNER_CUTLASS_GEMM_ROWS_F16(i8_f16_pp128rows, Epi64x64, Pp128)
