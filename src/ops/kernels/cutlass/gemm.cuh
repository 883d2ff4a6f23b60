// The runner's CUTLASS 3.x GEMMs for Hopper (sm_90a): TMA loads, warp-specialized mainloop
// (wgmma; ping-pong or cooperative), and an epilogue visitor tree that does what separate kernels
// did before:
//
//   8-bit:  D = act(fma(scale_w[n], acc[m, n] * scale_x[m], bias[n]))   (int8 or E4M3 inputs)
//   float:  D = act(acc[m, n] + bias[n])                                (f16 or bf16 inputs)
//
// with act the identity or erf GELU, D in f16 or bf16. acc is int32 (int8, exact) or f32 (E4M3:
// promoted to f32 along K, or with FP8 fast accumulation kept in the tensor cores' accumulator;
// fp16/bf16). The order of the 8-bit epilogue is that of the runner's dequantization kernel
// (src/ops/kernels/eight_bit.cu, dequant_i32), which nvcc contracts to the same fma. Each
// src/ops/kernels/cutlass/*.cu instantiates one combination and one configuration (tile, cluster,
// schedule) behind an extern "C" function (src/ops/cutlass.rs declares them and picks one per
// GEMM by its rows): the instantiations are heavy to compile, so the set is kept small.
#pragma once

#include <cuda_runtime.h>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/functional.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"

namespace runner_cutlass {

using namespace cute;
namespace fusion = cutlass::epilogue::fusion;

// Status codes the Rust side turns into messages (src/ops/cutlass.rs).
enum Status : int {
  kOk = 0,
  kCannotImplement = 1,  // shape or alignment CUTLASS refuses
  kNeedsWorkspace = 2,   // never expected for these kernels: no allocation inside a graph capture
  kInitFailed = 3,
  kLaunchFailed = 4,
};

template <class T> struct Identity {
  CUTLASS_HOST_DEVICE T operator()(T const &x) const { return x; }
};

// erf GELU, 0.5 x (1 + erf(x / sqrt 2)), with erf from a rational approximation in f32 (the
// 13/8 odd/even minimax form of Eigen's and XLA's fast erf; |z| clamped to 4, where erf is 1 in
// f32) and one fast division: no branch or select chain and one MUFU.RCP, against CUDA's erff (two
// polynomial sets selected by |z|, an EX2). In the 128x128 ping-pong epilogue: 22 instructions a
// value over the plain epilogue, erff's 25. Error: over every finite f32 x,
// |erf_fast(x / sqrt 2) - erf(x / sqrt 2)| <= 4.5e-7 in f32 arithmetic (measured exhaustively on the
// CPU against the double erf, worst at |x| = 5.52); __fdividef adds at most 2 ulp (2.4e-7), so
// |GeluErf(x) - GELU(x)| <= 3.5e-7 |x|: at most 1/700 of an f16 output's half-ulp for x >= 0, under
// one down to x = -3.19, absolute (~1e-7) below, as PyTorch's f32 0.5 x (1 + erff(x / sqrt 2)) is.
template <class T> struct GeluErf {
  CUTLASS_DEVICE static float erf_fast(float x) {
    float z = fminf(fmaxf(x, -4.0f), 4.0f);
    float z2 = z * z;
    float p = fmaf(z2, -2.72614225801306e-10f, 2.77068142495902e-08f);
    p = fmaf(z2, p, -2.10102402082508e-06f);
    p = fmaf(z2, p, -5.69250639462346e-05f);
    p = fmaf(z2, p, -7.34990630326855e-04f);
    p = fmaf(z2, p, -2.95459980854025e-03f);
    p = fmaf(z2, p, -1.60960333262415e-02f);
    float q = fmaf(z2, -1.45660718464996e-05f, -2.13374055278905e-04f);
    q = fmaf(z2, q, -1.68282697438203e-03f);
    q = fmaf(z2, q, -7.37332916720468e-03f);
    q = fmaf(z2, q, -1.42647390514189e-02f);
    return __fdividef(p * z, q);
  }
  CUTLASS_DEVICE float operator()(float const &x) const {
    float half_x = 0.5f * x;
    return fmaf(half_x, erf_fast(x * 0.70710678118654752f), half_x);
  }
};

template <class T, int N> struct GeluErf<cutlass::Array<T, N>> {
  CUTLASS_DEVICE cutlass::Array<T, N> operator()(cutlass::Array<T, N> const &v) const {
    cutlass::Array<T, N> y;
    GeluErf<T> g;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = g(v[i]);
    return y;
  }
};

// The epilogue tree. `Scaled`: the 8-bit form with per-token (column vector, scale_x[m]) and
// per-channel (row vector, scale_w[n]) scales; otherwise only the bias. Bias may be null (fused
// Q/K/V adds it later): the row broadcast then reads 0.
template <class Tile, class ElementD, class ElementBias, bool Scaled, template <class> class Act>
struct Epilogue;

template <class Tile, class ElementD, class ElementBias, template <class> class Act>
struct Epilogue<Tile, ElementD, ElementBias, true, Act> {
  static constexpr auto RN = cutlass::FloatRoundStyle::round_to_nearest;
  using Acc = fusion::Sm90AccFetch;
  using ScaleX = fusion::Sm90ColBroadcast<0, Tile, float, float, Stride<_1, _0, int64_t>, 1>;
  using ScaleW = fusion::Sm90RowBroadcast<0, Tile, float, float, Stride<_0, _1, int64_t>, 1>;
  using Bias = fusion::Sm90RowBroadcast<0, Tile, ElementBias, float, Stride<_0, _1, int64_t>, 1>;
  using AccTimesX = fusion::Sm90EVT<fusion::Sm90Compute<cutlass::multiplies, float, float, RN>, Acc, ScaleX>;
  using Dequant = fusion::Sm90EVT<fusion::Sm90Compute<cutlass::homogeneous_multiply_add, float, float, RN>,
                                  ScaleW, AccTimesX, Bias>;
  using Tree = fusion::Sm90EVT<fusion::Sm90Compute<Act, ElementD, float, RN>, Dequant>;

  static typename Tree::Arguments args(const float *scale_x, const float *scale_w, const ElementBias *bias) {
    typename ScaleX::Arguments sx{scale_x, 0.0f, {}};
    typename ScaleW::Arguments sw{scale_w, 0.0f, {}};
    typename Bias::Arguments b{bias, ElementBias(0), {}};
    return {{sw, {{}, sx, {}}, b, {}}, {}};
  }
};

template <class Tile, class ElementD, class ElementBias, template <class> class Act>
struct Epilogue<Tile, ElementD, ElementBias, false, Act> {
  static constexpr auto RN = cutlass::FloatRoundStyle::round_to_nearest;
  using Acc = fusion::Sm90AccFetch;
  using Bias = fusion::Sm90RowBroadcast<0, Tile, ElementBias, float, Stride<_0, _1, int64_t>, 1>;
  using Sum = fusion::Sm90EVT<fusion::Sm90Compute<cutlass::plus, float, float, RN>, Acc, Bias>;
  using Tree = fusion::Sm90EVT<fusion::Sm90Compute<Act, ElementD, float, RN>, Sum>;

  static typename Tree::Arguments args(const float *, const float *, const ElementBias *bias) {
    typename Bias::Arguments b{bias, ElementBias(0), {}};
    return {{{}, b, {}}, {}};
  }
};

// One GEMM D (m, n) row-major = epilogue(A (m, k) row-major . B (n, k)^T), as the runner stores
// activations (token-major) and weights ((out, in), PyTorch's layout): the TN form the 8-bit
// tensor-core GEMMs require.
template <class ElementAB, class ElementAcc, class ElementD, class ElementBias, bool Scaled,
          template <class> class Act, class Config>
struct Gemm {
  using Tile = typename Config::Tile;
  using Cluster = typename Config::Cluster;
  using Ep = Epilogue<Tile, ElementD, ElementBias, Scaled, Act>;
  static constexpr int kAlignAB = 128 / cutlass::sizeof_bits<ElementAB>::value;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, float, void, cutlass::layout::RowMajor,
      kAlignD, ElementD, cutlass::layout::RowMajor, kAlignD, typename Config::EpilogueSchedule,
      typename Ep::Tree>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementAB, cutlass::layout::RowMajor, kAlignAB,
      ElementAB, cutlass::layout::ColumnMajor, kAlignAB, ElementAcc, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      typename Config::MainloopSchedule>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                      CollectiveEpilogue, cutlass::gemm::PersistentScheduler>;
  using Adapter = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static int run(const void *a, const void *b, const float *scale_x, const float *scale_w,
                 const void *bias, void *d, int m, int n, int k, cudaStream_t stream) {
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
        {Ep::args(scale_x, scale_w, static_cast<const ElementBias *>(bias)), nullptr, sc,
         static_cast<ElementD *>(d), sd}};
    Adapter gemm;
    if (gemm.can_implement(args) != cutlass::Status::kSuccess) return kCannotImplement;
    if (Adapter::get_workspace_size(args) != 0) return kNeedsWorkspace;
    if (gemm.initialize(args, nullptr, stream) != cutlass::Status::kSuccess) return kInitFailed;
    if (gemm.run(stream) != cutlass::Status::kSuccess) return kLaunchFailed;
    return cudaPeekAtLastError() == cudaSuccess ? kOk : kLaunchFailed;
  }
};

// The configurations (src/ops/cutlass.rs names them and says which GEMM takes which):
//   ping-pong: two consumer warpgroups, each on its own output tile, one's epilogue overlapping the
//     other's mainloop (a tile's epilogue is done by 4 warps, one per scheduler);
//   cooperative: both warpgroups on one tile (64 rows each), epilogue after the mainloop by 8 warps.
// The K step is one 128-byte TMA row (128 8-bit values, 64 16-bit ones). Clusters of 2 CTAs along M
// share the weight tile by multicast (along N for the small-M tile: they share the activations).
// E4M3 without fast accumulation keeps a second f32 accumulator for the promotion along K: a 128 x
// 128 ping-pong tile (128 accumulators a thread, doubled) spills to local memory (the STACK:280 of
// the first build), the cooperative one (64, doubled) does not.
template <class TileT, class ClusterT, class MainloopT, class EpilogueT> struct Config {
  using Tile = TileT;
  using Cluster = ClusterT;
  using MainloopSchedule = MainloopT;
  using EpilogueSchedule = EpilogueT;
};
namespace k = cutlass::gemm;
namespace e = cutlass::epilogue;
using C2x1 = Shape<_2, _1, _1>;
using C1x2 = Shape<_1, _2, _1>;
using Pp128 = Config<Shape<_128, _128, _128>, C2x1, k::KernelTmaWarpSpecializedPingpong, e::TmaWarpSpecialized>;
using Co128 = Config<Shape<_128, _128, _128>, C2x1, k::KernelTmaWarpSpecializedCooperative,
                     e::TmaWarpSpecializedCooperative>;
using Co256 = Config<Shape<_128, _256, _128>, C2x1, k::KernelTmaWarpSpecializedCooperative,
                     e::TmaWarpSpecializedCooperative>;
using Pp128Fast = Config<Shape<_128, _128, _128>, C2x1, k::KernelTmaWarpSpecializedPingpongFP8FastAccum,
                         e::TmaWarpSpecialized>;
using Pp64Fast = Config<Shape<_64, _128, _128>, C1x2, k::KernelTmaWarpSpecializedPingpongFP8FastAccum,
                        e::TmaWarpSpecialized>;
using Pp128F16 = Config<Shape<_128, _128, _64>, C2x1, k::KernelTmaWarpSpecializedPingpong, e::TmaWarpSpecialized>;

}  // namespace runner_cutlass

// One extern "C" entry point: runner_cutlass_<NAME>(a, b, scale_x, scale_w, bias, d, m, n, k, stream).
#define RUNNER_CUTLASS_GEMM(NAME, AB, ACC, D, BIAS, SCALED, ACT, CONFIG)                                 \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, void *d, int m, int n,  \
                                       int k, cudaStream_t stream) {                                   \
    using G = runner_cutlass::Gemm<AB, ACC, D, BIAS, SCALED, ACT, runner_cutlass::CONFIG>;              \
    return G::run(a, b, scale_x, scale_w, bias, d, m, n, k, stream);                                    \
  }
