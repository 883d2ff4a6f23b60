// FFN-in writing FFN-out's 8-bit codes with static per-column scales (device.ffn_activation_scales =
// "static"): the 8-bit epilogue of gemm.cuh, then, per output column n,
//
//   code[m, n] = Q(GELU(fma(scale_w[n], acc[m, n] * scale_x[m], bias[n])) * inv_scale[n])
//
// with Q int8's round half away from zero clamped to [-127, 127] (quantize_one<false> in
// eight_bit.cu) or E4M3's clamp to +-448 then the hardware's round-to-nearest-even conversion
// (cvt.rn.satfinite, as quantize_one<true>). inv_scale[n] = 1 / s_n, with s_n the column's
// calibrated step (src/model/parts/static_scales.rs): FFN-out's weights hold s_n folded in, so
// FFN-out reads the codes with a row scale of 1. No row pass, and one byte a value stored
// instead of two. A header of its own so that gemm.cuh's 16 instantiations do not recompile.
#pragma once

#include "gemm.cuh"

namespace runner_cutlass {

// Rounds and clamps as the runner's int8 quantization does; the array converter to int8 after it
// is then exact (an integer in [-127, 127]).
template <class T> struct RoundI8 {
  CUTLASS_HOST_DEVICE T operator()(T const &x) const { return fminf(fmaxf(roundf(x), -127.0f), 127.0f); }
};
template <class T, int N> struct RoundI8<cutlass::Array<T, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<T, N> operator()(cutlass::Array<T, N> const &v) const {
    cutlass::Array<T, N> y;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = RoundI8<T>{}(v[i]);
    return y;
  }
};
// E4M3: the clamp only; the converter rounds to nearest even (satfinite).
template <class T> struct ClampE4m3 {
  CUTLASS_HOST_DEVICE T operator()(T const &x) const { return fminf(fmaxf(x, -448.0f), 448.0f); }
};
template <class T, int N> struct ClampE4m3<cutlass::Array<T, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<T, N> operator()(cutlass::Array<T, N> const &v) const {
    cutlass::Array<T, N> y;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = ClampE4m3<T>{}(v[i]);
    return y;
  }
};

template <class Tile, class ElementCode, class ElementBias, template <class> class Quant,
          template <class> class Act>
struct CodesEpilogue {
  static constexpr auto RN = cutlass::FloatRoundStyle::round_to_nearest;
  using Base = Epilogue<Tile, float, ElementBias, true, Act>;  // GELU(dequant) in f32
  using InvScale = fusion::Sm90RowBroadcast<0, Tile, float, float, Stride<_0, _1, int64_t>, 1>;
  using Scaled = fusion::Sm90EVT<fusion::Sm90Compute<cutlass::multiplies, float, float, RN>,
                                 typename Base::Tree, InvScale>;
  using Tree = fusion::Sm90EVT<fusion::Sm90Compute<Quant, ElementCode, float, RN>, Scaled>;

  static typename Tree::Arguments args(const float *scale_x, const float *scale_w, const ElementBias *bias,
                                       const float *inv_scale) {
    typename InvScale::Arguments inv{inv_scale, 0.0f, {}};
    return {{Base::args(scale_x, scale_w, bias), inv, {}}, {}};
  }
};

template <class ElementAB, class ElementCode, class ElementBias, template <class> class Quant, class Config,
          template <class> class Act = GeluErf>
struct GemmCodes {
  using Tile = typename Config::Tile;
  using Cluster = typename Config::Cluster;
  using Ep = CodesEpilogue<Tile, ElementCode, ElementBias, Quant, Act>;
  static constexpr int kAlignAB = 128 / cutlass::sizeof_bits<ElementAB>::value;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementCode>::value;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, typename std::conditional<std::is_same<ElementAB, int8_t>::value,
      int32_t, float>::type, float, void, cutlass::layout::RowMajor, kAlignD, ElementCode, cutlass::layout::RowMajor,
      kAlignD, typename Config::EpilogueSchedule, typename Ep::Tree>::CollectiveOp;

  using ElementAcc = typename std::conditional<std::is_same<ElementAB, int8_t>::value, int32_t, float>::type;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementAB, cutlass::layout::RowMajor, kAlignAB,
      ElementAB, cutlass::layout::ColumnMajor, kAlignAB, ElementAcc, Tile, Cluster,
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
        {static_cast<const ElementAB *>(a), sa, static_cast<const ElementAB *>(b), sb},
        {Ep::args(scale_x, scale_w, static_cast<const ElementBias *>(bias), inv_scale), nullptr, sc,
         static_cast<ElementCode *>(d), sd}};
    Adapter gemm;
    if (gemm.can_implement(args) != cutlass::Status::kSuccess) return kCannotImplement;
    if (Adapter::get_workspace_size(args) != 0) return kNeedsWorkspace;
    if (gemm.initialize(args, nullptr, stream) != cutlass::Status::kSuccess) return kInitFailed;
    if (gemm.run(stream) != cutlass::Status::kSuccess) return kLaunchFailed;
    return cudaPeekAtLastError() == cudaSuccess ? kOk : kLaunchFailed;
  }
};

}  // namespace runner_cutlass

// runner_cutlass_<NAME>(a, b, scale_x, scale_w, bias, inv_scale, codes, m, n, k, stream).
#define RUNNER_CUTLASS_GEMM_CODES(NAME, AB, CODE, BIAS, QUANT, CONFIG)                                   \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, const float *inv_scale, \
                                       void *d, int m, int n, int k, cudaStream_t stream) {            \
    using G = runner_cutlass::GemmCodes<AB, CODE, BIAS, runner_cutlass::QUANT, runner_cutlass::CONFIG>;  \
    return G::run(a, b, scale_x, scale_w, bias, inv_scale, d, m, n, k, stream);                         \
  }
// The same with the GELU functor named (gelu_lean.cuh's GeluLean).
#define RUNNER_CUTLASS_GEMM_CODES_ACT(NAME, AB, CODE, BIAS, QUANT, ACT, CONFIG)                          \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, const float *inv_scale, \
                                       void *d, int m, int n, int k, cudaStream_t stream) {            \
    using G = runner_cutlass::GemmCodes<AB, CODE, BIAS, runner_cutlass::QUANT, runner_cutlass::CONFIG,   \
                                        ACT>;                                                           \
    return G::run(a, b, scale_x, scale_w, bias, inv_scale, d, m, n, k, stream);                         \
  }
