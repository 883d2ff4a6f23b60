// int8 x int8 -> f16 as i8_f16_pp128rows (gemm_rows.cuh's epilogue, the same bits as gemm.cuh's),
// 128x128 ping-pong without clusters (i8_f16_pp128c1's configuration, session 8's pick at the
// 768-wide outputs on the H200). A tactic candidate of i8_f16_pp128.
#include "gemm_rows.cuh"
RUNNER_CUTLASS_GEMM_ROWS_F16(i8_f16_pp128c1rows, Epi64x64, Pp128C1)
