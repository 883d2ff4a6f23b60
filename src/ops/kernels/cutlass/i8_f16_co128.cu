// int8 x int8 -> f16, per-token x per-channel scales + the f32 bias; 128x128 cooperative (the
// 8-warp epilogue after the mainloop), a tactic candidate beside i8_f16_pp128. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_f16_co128, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::Identity, Co128)
