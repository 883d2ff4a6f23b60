// FFN-in writing FFN-out's int8 codes with static per-column steps (gemm_codes.cuh's kernel) with
// the epilogue in one node and fewer instructions a value:
//
//   y    = fma(scale_w[n], acc[m, n] * scale_x[m], bias[n])            (as gemm_codes.cuh)
//   h    = y * (0.5 inv_scale[n]),  t = tanh.approx(y (a + b y^2))      (GeluTanhFit's a, b)
//   code = low byte of bits(clamp(fma(h, t, h), -127, 127) + 1.5 x 2^23)
//
// fma(h, t, h) = GELU(y) / s_n with GELU(y) = y (0.5 + 0.5 t), and adding 1.5 x 2^23 to a float
// in [-127, 127] rounds it to an integer (to nearest, ties to even) held in the low mantissa
// bits: the low byte is the code in two's complement, four of them packed by three PRMTs. Against
// gemm_codes.cuh's tree (Act, then * inv_scale, then roundf + clamp, then the converter's F2I and
// its clamp to int8): no roundf (FRND and its fix-ups), no F2I and no integer clamp, one multiply
// fewer, and the node returns the int8 fragment itself, so the collective stores it as it is (its
// "direct R2S": no f32 fragment of the subtile kept for a converter pass).
//
// Rounding: ties go to even where gemm_codes.cuh's RoundI8 (the runner's quantize_one) rounds
// them away from zero: a code can differ by one only where GELU(y) / s_n lands exactly on
// k + 0.5, inside the tanh fit's own 0.05 step (gelu_lean.cuh), and E4M3's codes already round
// that way. NaN: the clamp maps it to -127 as gemm_codes.cuh's fmaxf does; the NaN reaches FFN-out
// through the row's scale (the input scale is NaN), as before.
//
// EpiTile: the epilogue subtile (M, N); EpilogueTileAuto is CUTLASS's choice (64 x 64 for an int8
// ping-pong tile, 128 x 32 cooperative). A wider subtile means fewer subtile rounds a tile (each
// one a named barrier, a fence and a TMA store) at 1 byte a value of shared memory.
#pragma once

#include "gemm.cuh"

namespace runner_cutlass {

// Sm90Compute applies ComputeFn<Array<float, N>> to its children's fragments (converted to f32:
// the int32 accumulator by I2FP) and converts the result to ElementOutput: returning
// Array<int8_t, N> makes that conversion the identity.
template <class T> struct CodesTanhRne {};

template <int N> struct CodesTanhRne<cutlass::Array<float, N>> {
  static_assert(N % 4 == 0, "codes are packed four to a word");
  CUTLASS_DEVICE cutlass::Array<int8_t, N> operator()(
      cutlass::Array<float, N> const &acc, cutlass::Array<float, N> const &scale_x,
      cutlass::Array<float, N> const &scale_w, cutlass::Array<float, N> const &bias,
      cutlass::Array<float, N> const &inv_scale) const {
    alignas(16) cutlass::Array<int8_t, N> out;
    uint32_t *words = reinterpret_cast<uint32_t *>(out.data());
    CUTLASS_PRAGMA_UNROLL
    for (int w = 0; w < N / 4; ++w) {
      uint32_t b[4];
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < 4; ++j) {
        int i = 4 * w + j;
        float y = fmaf(scale_w[i], acc[i] * scale_x[i], bias[i]);
        float u = y * fmaf(y * y, 0.03537741f, 0.79868456f);
        float t;
        asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(u));
        float h = y * (0.5f * inv_scale[i]);
        float v = fminf(fmaxf(fmaf(h, t, h), -127.0f), 127.0f);
        b[j] = __float_as_uint(v + 12582912.0f);
      }
      words[w] = __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
    }
    return out;
  }
};

template <class Tile> struct CodesLeanEpilogue {
  static constexpr auto RN = cutlass::FloatRoundStyle::round_to_nearest;
  using Acc = fusion::Sm90AccFetch;
  using ScaleX = fusion::Sm90ColBroadcast<0, Tile, float, float, Stride<_1, _0, int64_t>, 1>;
  using ScaleW = fusion::Sm90RowBroadcast<0, Tile, float, float, Stride<_0, _1, int64_t>, 1>;
  using Bias = fusion::Sm90RowBroadcast<0, Tile, float, float, Stride<_0, _1, int64_t>, 1>;
  using InvScale = fusion::Sm90RowBroadcast<0, Tile, float, float, Stride<_0, _1, int64_t>, 1>;
  using Tree = fusion::Sm90EVT<fusion::Sm90Compute<CodesTanhRne, int8_t, float, RN>, Acc, ScaleX, ScaleW,
                               Bias, InvScale>;

  static typename Tree::Arguments args(const float *scale_x, const float *scale_w, const float *bias,
                                       const float *inv_scale) {
    return {{}, {scale_x, 0.0f, {}}, {scale_w, 0.0f, {}}, {bias, 0.0f, {}}, {inv_scale, 0.0f, {}}, {}};
  }
};

template <class Config, class EpiTile = cutlass::epilogue::collective::EpilogueTileAuto>
struct GemmCodesLean {
  using Tile = typename Config::Tile;
  using Cluster = typename Config::Cluster;
  using Ep = CodesLeanEpilogue<Tile>;
  static constexpr int kAlign = 16;  // int8 A, B and codes: 16 a 128-bit access

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster, EpiTile, int32_t, float, void,
      cutlass::layout::RowMajor, kAlign, int8_t, cutlass::layout::RowMajor, kAlign,
      typename Config::EpilogueSchedule, typename Ep::Tree>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, int8_t, cutlass::layout::RowMajor, kAlign, int8_t,
      cutlass::layout::ColumnMajor, kAlign, int32_t, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      typename Config::MainloopSchedule>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                      CollectiveEpilogue, cutlass::gemm::PersistentScheduler>;
  using Adapter = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static int run(const void *a, const void *b, const float *scale_x, const float *scale_w, const void *bias,
                 const float *inv_scale, void *d, int m, int n, int k, cudaStream_t stream) {
    using StrideA = typename Kernel::StrideA;
    using StrideB = typename Kernel::StrideB;
    using StrideC = typename Kernel::StrideC;
    using StrideD = typename Kernel::StrideD;
    StrideA sa = cutlass::make_cute_packed_stride(StrideA{}, make_shape(m, k, 1));
    StrideB sb = cutlass::make_cute_packed_stride(StrideB{}, make_shape(n, k, 1));
    StrideC sc = cutlass::make_cute_packed_stride(StrideC{}, make_shape(m, n, 1));
    StrideD sd = cutlass::make_cute_packed_stride(StrideD{}, make_shape(m, n, 1));
    typename Adapter::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {m, n, k, 1},
        {static_cast<const int8_t *>(a), sa, static_cast<const int8_t *>(b), sb},
        {Ep::args(scale_x, scale_w, static_cast<const float *>(bias), inv_scale), nullptr, sc,
         static_cast<int8_t *>(d), sd}};
    Adapter gemm;
    if (gemm.can_implement(args) != cutlass::Status::kSuccess) return kCannotImplement;
    if (Adapter::get_workspace_size(args) != 0) return kNeedsWorkspace;
    if (gemm.initialize(args, nullptr, stream) != cutlass::Status::kSuccess) return kInitFailed;
    if (gemm.run(stream) != cutlass::Status::kSuccess) return kLaunchFailed;
    return cudaPeekAtLastError() == cudaSuccess ? kOk : kLaunchFailed;
  }
};

}  // namespace runner_cutlass

// runner_cutlass_<NAME>(a, b, scale_x, scale_w, bias, inv_scale, codes, m, n, k, stream), as
// gemm_codes.cuh's entry points (f32 bias).
#define RUNNER_CUTLASS_GEMM_CODES_LEAN(NAME, EPI_TILE, CONFIG)                                           \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, const float *inv_scale, \
                                       void *d, int m, int n, int k, cudaStream_t stream) {            \
    using G = runner_cutlass::GemmCodesLean<runner_cutlass::CONFIG, EPI_TILE>;                                        \
    return G::run(a, b, scale_x, scale_w, bias, inv_scale, d, m, n, k, stream);                         \
  }
