// The runner's CUTLASS 3.x GEMMs for Hopper (sm_90a): TMA loads, warp-specialized ping-pong
// mainloop (wgmma), and an epilogue visitor tree that does what separate kernels did before:
//
//   8-bit:  D = act(fma(scale_w[n], acc[m, n] * scale_x[m], bias[n]))   (int8 or E4M3 inputs)
//   float:  D = act(acc[m, n] + bias[n])                                (f16 or bf16 inputs)
//
// with act the identity or erf GELU, D in f16 or bf16. acc is int32 (int8, exact) or f32 (E4M3,
// promoted to f32 along K; fp16/bf16). The order of the 8-bit epilogue is that of the runner's
// dequantization kernel (src/ops/kernels/eight_bit.cu, dequant_i32), which nvcc contracts to the
// same fma. Each src/ops/kernels/cutlass/*.cu instantiates one combination behind an extern "C"
// function (src/ops/cutlass.rs declares them): the instantiations are heavy to compile, so the
// set is kept small.
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
          template <class> class Act, class Tile, class Cluster, class MainloopSchedule>
struct Gemm {
  using Ep = Epilogue<Tile, ElementD, ElementBias, Scaled, Act>;
  static constexpr int kAlignAB = 128 / cutlass::sizeof_bits<ElementAB>::value;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, float, void, cutlass::layout::RowMajor,
      kAlignD, ElementD, cutlass::layout::RowMajor, kAlignD, cutlass::epilogue::TmaWarpSpecialized,
      typename Ep::Tree>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementAB, cutlass::layout::RowMajor, kAlignAB,
      ElementAB, cutlass::layout::ColumnMajor, kAlignAB, ElementAcc, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp;

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

// The tile shapes: 128 x 128 output tiles, the K step one 128-byte TMA row of 8-bit values (64 of
// 16-bit ones), clusters of 2 CTAs along M sharing the weight tile by multicast; the configuration
// vLLM ships as its default for large-M 8-bit GEMMs on Hopper.
using Tile8 = Shape<_128, _128, _128>;
using Tile16 = Shape<_128, _128, _64>;
using Cluster = Shape<_2, _1, _1>;
using PingPong = cutlass::gemm::KernelTmaWarpSpecializedPingpong;

}  // namespace runner_cutlass

// One extern "C" entry point: runner_cutlass_<NAME>(a, b, scale_x, scale_w, bias, d, m, n, k, stream).
#define RUNNER_CUTLASS_GEMM(NAME, AB, ACC, D, BIAS, SCALED, ACT, TILE)                                   \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, void *d, int m, int n,  \
                                       int k, cudaStream_t stream) {                                   \
    using G = runner_cutlass::Gemm<AB, ACC, D, BIAS, SCALED, ACT, runner_cutlass::TILE,                 \
                                   runner_cutlass::Cluster, runner_cutlass::PingPong>;                 \
    return G::run(a, b, scale_x, scale_w, bias, d, m, n, k, stream);                                    \
  }
