// int8 x int8 -> f16, per-token x per-channel scales + the f32 bias; 128x96 ping-pong without
// clusters: a 768-wide output at 2048 rows is 128 tiles (16 x 8) on 132 SMs, one wave of 3/4 of
// a 128x128 tile's work each, where 128x128 leaves 36 SMs idle (96 tiles) and stream-K pays a
// reduction. A tactic candidate of i8_f16_pp128 once `cutlass_check --tactics` has passed. The
// configuration lives here, not in gemm.cuh, whose every change recompiles every instantiation.
#include "gemm.cuh"
namespace runner_cutlass {
using Pp128x96C1 = Config<Shape<_128, _96, _128>, Shape<_1, _1, _1>, k::KernelTmaWarpSpecializedPingpong,
                          e::TmaWarpSpecialized>;
}
RUNNER_CUTLASS_GEMM(i8_f16_pp128x96c1, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::Identity, Pp128x96C1)
