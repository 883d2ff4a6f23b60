// int8 x int8 -> f16, per-token x per-channel scales + the f32 bias; 128x128 cooperative, no
// clusters, the stream-K tile scheduler (split-K or stream-K by the call's `splits`): the tactic
// candidate for attention-out and FFN-out at few tiles. See gemm_streamk.cuh.
#include "gemm_streamk.cuh"
RUNNER_CUTLASS_GEMM_STREAMK(i8_f16_co128sk, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::Identity, Co128C1)
