// gemm.cuh's GEMM with CUTLASS's sm90 stream-K tile scheduler, for GEMMs with fewer output tiles
// than SMs: at batch 16 the encoder's attention-out and FFN-out (2048 x 768 outputs) are 96
// 128x128 tiles on 132 SMs, each one long dependent K loop, so a quarter of the machine idles.
// The scheduler cuts the K loops instead: `splits` >= 2 splits each tile's K that many ways
// (split-K), `splits` = 0 spreads all the tiles' K iterations evenly over the SMs (stream-K).
// Partial accumulators meet in a workspace (int32: atomically, exact in any order; f32: in the
// order of K, so the same bits every run) and the tile's last unit runs the same epilogue tree on
// the whole sum, so the scales, bias and activation see what the data-parallel kernel's see.
//
// The workspace is the caller's (allocated once per size before any graph capture, since a
// capture cannot allocate); `initialize` zero-fills its barriers on the stream on every call (a
// memset node in a captured graph). Cooperative kernel only: CUTLASS's ping-pong kernel
// static_asserts against stream-K.
#pragma once

#include <cstddef>

#include "gemm.cuh"

namespace runner_cutlass {

template <class ElementAB, class ElementAcc, class ElementD, class ElementBias, bool Scaled,
          template <class> class Act, class Config>
struct GemmStreamK {
  using Base = Gemm<ElementAB, ElementAcc, ElementD, ElementBias, Scaled, Act, Config>;
  using Ep = typename Base::Ep;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, typename Base::CollectiveMainloop,
                                                      typename Base::CollectiveEpilogue,
                                                      cutlass::gemm::StreamKScheduler>;
  using Adapter = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using Scheduler = typename Kernel::TileScheduler;

  static typename Adapter::Arguments arguments(const void *a, const void *b, const float *scale_x,
                                               const float *scale_w, const void *bias, void *d, int m,
                                               int n, int k, int splits) {
    using StrideA = typename Kernel::StrideA;
    using StrideB = typename Kernel::StrideB;
    using StrideC = typename Kernel::StrideC;
    using StrideD = typename Kernel::StrideD;
    StrideA sa = cutlass::make_cute_packed_stride(StrideA{}, make_shape(m, k, 1));
    StrideB sb = cutlass::make_cute_packed_stride(StrideB{}, make_shape(n, k, 1));
    StrideC sc = cutlass::make_cute_packed_stride(StrideC{}, make_shape(m, n, 1));
    StrideD sd = cutlass::make_cute_packed_stride(StrideD{}, make_shape(m, n, 1));
    using Decomposition = typename Scheduler::DecompositionMode;
    typename Scheduler::Arguments scheduler;
    scheduler.splits = splits >= 2 ? splits : 1;
    scheduler.decomposition_mode = splits >= 2 ? Decomposition::SplitK : Decomposition::StreamK;
    // int32 partial sums add exactly in any order: the atomic reduction gives the turnstile's
    // bits without its waits. f32 ones keep the turnstile (the same bits on every run).
    if constexpr (cute::is_same_v<ElementAcc, int32_t>) {
      scheduler.reduction_mode = Scheduler::ReductionMode::Nondeterministic;
    }
    typename Adapter::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {m, n, k, 1},
        {static_cast<const ElementAB *>(a), sa, static_cast<const ElementAB *>(b), sb},
        {Ep::args(scale_x, scale_w, static_cast<const ElementBias *>(bias)), nullptr, sc,
         static_cast<ElementD *>(d), sd},
        {},
        scheduler};
    return args;
  }

  // The bytes of workspace a call of this shape and decomposition needs (it depends on the SM
  // count, which CUTLASS queries from the current device as `run` does).
  static size_t workspace_size(int m, int n, int k, int splits) {
    auto args = arguments(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, m, n, k, splits);
    return Adapter::get_workspace_size(args);
  }

  static int run(const void *a, const void *b, const float *scale_x, const float *scale_w,
                 const void *bias, void *d, int m, int n, int k, int splits, void *workspace,
                 size_t workspace_bytes, cudaStream_t stream) {
    if (splits < 0 || splits == 1) return kCannotImplement;
    auto args = arguments(a, b, scale_x, scale_w, bias, d, m, n, k, splits);
    Adapter gemm;
    if (gemm.can_implement(args) != cutlass::Status::kSuccess) return kCannotImplement;
    size_t needed = Adapter::get_workspace_size(args);
    if (needed > workspace_bytes || (needed > 0 && workspace == nullptr)) return kNeedsWorkspace;
    if (gemm.initialize(args, workspace, stream) != cutlass::Status::kSuccess) return kInitFailed;
    if (gemm.run(stream) != cutlass::Status::kSuccess) return kLaunchFailed;
    return cudaPeekAtLastError() == cudaSuccess ? kOk : kLaunchFailed;
  }
};

// 128 x 128 cooperative without clusters: stream-K units are single CTAs.
using Co128C1 = Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, k::KernelTmaWarpSpecializedCooperative,
                       e::TmaWarpSpecializedCooperative>;

}  // namespace runner_cutlass

// Two extern "C" entry points: runner_cutlass_<NAME>(a, b, scale_x, scale_w, bias, d, m, n, k,
// splits, workspace, workspace_bytes, stream) and runner_cutlass_<NAME>_workspace(m, n, k, splits).
#define RUNNER_CUTLASS_GEMM_STREAMK(NAME, AB, ACC, D, BIAS, SCALED, ACT, CONFIG)                         \
  using runner_cutlass_##NAME##_t =                                                                     \
      runner_cutlass::GemmStreamK<AB, ACC, D, BIAS, SCALED, ACT, runner_cutlass::CONFIG>;               \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, void *d, int m, int n,  \
                                       int k, int splits, void *workspace, size_t workspace_bytes,     \
                                       cudaStream_t stream) {                                          \
    return runner_cutlass_##NAME##_t::run(a, b, scale_x, scale_w, bias, d, m, n, k, splits, workspace, \
                                          workspace_bytes, stream);                                    \
  }                                                                                                     \
  extern "C" size_t runner_cutlass_##NAME##_workspace(int m, int n, int k, int splits) {               \
    return runner_cutlass_##NAME##_t::workspace_size(m, n, k, splits);                                \
  }
