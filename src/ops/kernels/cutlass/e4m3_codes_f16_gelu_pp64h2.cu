// e4m3_codes_f16_gelu_pp128x64h2's epilogue (CodesE4m3Half2Op: the fitted tanh GELU in f16 pairs)
// on 64 x 128 tiles, clusters of 2 along N (they share the activations), f32 accumulation promoted
// along K (64 and 64 accumulators a thread): the same work split the other way, a tactic candidate
// beside it.
#include "gemm_rows.cuh"
namespace runner_cutlass {
using Pp64 = Config<Shape<_64, _128, _128>, C1x2, k::KernelTmaWarpSpecializedPingpong, e::TmaWarpSpecialized>;
}
RUNNER_CUTLASS_GEMM_ROWS_CODES_E4M3_HALF2(e4m3_codes_f16_gelu_pp64h2, Epi64x128, Pp64)
