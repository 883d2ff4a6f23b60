// int8 x int8 -> f16, per-token x per-channel scales + the f32 bias; 128x128 ping-pong without
// clusters (no multicast: no CTA waits on its pair's free stage), a tactic candidate. The
// configuration lives here, not in gemm.cuh, whose every change recompiles every instantiation.
#include "gemm.cuh"
namespace runner_cutlass {
using Pp128C1 = Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, k::KernelTmaWarpSpecializedPingpong,
                       e::TmaWarpSpecialized>;
}
RUNNER_CUTLASS_GEMM(i8_f16_pp128c1, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::Identity, Pp128C1)
