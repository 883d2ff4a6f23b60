// E4M3 FFN-in (f16 model) -> E4M3 codes for FFN-out (static steps): gemm_rows.cuh's epilogue
// (scale_w, the f16 bias and the steps' inverses in one round trip) with CodesE4m3Half2Op (the
// fitted tanh GELU in f16 pairs, cvt.rn.satfinite.e4m3x2.f16x2): the int8 lean kernel's design for
// fp8-fp16, whose only codes kernel was e4m3_codes_f16_gelu_co128 (128 us at 8192 rows on an H100
// against int8's 56). 128x64 ping-pong, clusters of 2 along M, f32 accumulation promoted along K:
// a 128 x 128 ping-pong tile would spill its second accumulator (gemm.cuh), 128 x 64 holds 64 and
// 64 a thread. The configuration lives here, as i8_f16_pp128x64's.
#include "gemm_rows.cuh"
namespace runner_cutlass {
using Pp128x64 = Config<Shape<_128, _64, _128>, C2x1, k::KernelTmaWarpSpecializedPingpong, e::TmaWarpSpecialized>;
}
RUNNER_CUTLASS_GEMM_ROWS_CODES_E4M3_HALF2(e4m3_codes_f16_gelu_pp128x64h2, Epi64x64, Pp128x64)
