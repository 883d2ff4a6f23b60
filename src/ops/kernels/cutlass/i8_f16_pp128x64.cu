// int8 x int8 -> f16, per-token x per-channel scales + the f32 bias; 128x64 ping-pong, clusters
// of 2 along M: twice the tiles of 128x128 and half the epilogue a tile, a tactic candidate for
// the 768-wide outputs (384 tiles of 128x128 over 132 SMs). The configuration lives here, not in
// gemm.cuh, whose every change recompiles every instantiation.
#include "gemm.cuh"
namespace runner_cutlass {
using Pp128x64 = Config<Shape<_128, _64, _128>, C2x1, k::KernelTmaWarpSpecializedPingpong, e::TmaWarpSpecialized>;
}
RUNNER_CUTLASS_GEMM(i8_f16_pp128x64, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::Identity, Pp128x64)
