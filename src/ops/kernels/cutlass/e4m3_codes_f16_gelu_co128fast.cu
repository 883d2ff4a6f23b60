// E4M3 FFN-in (f16 model) -> E4M3 codes for FFN-out (static per-column scales) with FP8 fast
// accumulation (device.fp8_fast_accumulation: the partial sums stay in the tensor cores'
// accumulator, no promotion along K and so no MMA-pipeline drain every k-tile), f16 bias + GELU
// (fast erf); 128x128 cooperative: e4m3_codes_f16_gelu_co128 for the fast kind, its standard kernel.
#include "gemm_codes.cuh"
namespace runner_cutlass {
using Co128Fast = Config<Shape<_128, _128, _128>, C2x1, k::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                         e::TmaWarpSpecializedCooperative>;
}
RUNNER_CUTLASS_GEMM_CODES(e4m3_codes_f16_gelu_co128fast, cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::half_t, ClampE4m3, Co128Fast)
