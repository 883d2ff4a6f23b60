// The 8-bit epilogue with its per-column vectors loaded at once: one node that reads scale_w,
// bias (and, for the codes, the steps' inverses) for the tile in one round trip to L2, where
// gemm.cuh's tree has one Sm90RowBroadcast each, whose loads the compiler issues one after the
// other (each load's store to shared memory sits behind its own bounds branch: the SASS of
// i8_codes_gelu_pp128tanh has LDG, STS, LDG, STS, LDG, STS before the epilogue's barrier, three
// L2 latencies at the start of every tile's epilogue). In the ping-pong kernel the epilogues of
// the two consumer warpgroups run one after the other (OrderedSequenceBarrier), so a tile's
// epilogue latency is the kernel's period wherever it exceeds the mainloop's.
//
// Op computes the output fragment from the accumulators, the row's scale and the three column
// vectors (the third null for the f16 outputs):
//   DequantOp:   D = fma(scale_w[n], acc * scale_x[m], bias[n]) rounded to f16: gemm.cuh's
//                8-bit tree (Identity), the same bits;
//   CodesTanhOp: gemm_codes_lean.cuh's codes (fitted-tanh GELU, steps, ties to even);
//   CodesHalf2Op: the same codes with the GELU in f16 pairs (fewer instructions a value);
//   CodesE4m3Half2Op: E4M3 inputs and codes (an f16 model's FFN-in), CodesHalf2Op's GELU.
// An Op with kPrepares rewrites its third vector once a tile, as it is loaded (prepare).
// Both return the output element itself, which the collective stores as it is (direct R2S).
#pragma once

#include <cuda_fp16.h>

#include "gemm.cuh"

namespace runner_cutlass {

template <class CtaTileShapeMNK, int NumVectors, class Op> struct Sm90RowVectors {
  using ElementBias = typename Op::ElementBias;
  static_assert(NumVectors == 2 || NumVectors == 3, "scale_w, bias and optionally inv_scale");
  static constexpr int CtaN = size<1>(CtaTileShapeMNK{});

  struct SharedStorage {
    array_aligned<float, NumVectors * CtaN> smem;
  };
  struct Arguments {
    const float *scale_w = nullptr;
    const ElementBias *bias = nullptr;  // null: 0
    const float *third = nullptr;
  };
  using Params = Arguments;

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const &, Arguments const &args, void *) {
    return args;
  }
  template <class ProblemShape> static bool can_implement(ProblemShape const &, Arguments const &args) {
    return args.scale_w != nullptr && (NumVectors == 2 || args.third != nullptr);
  }
  template <class ProblemShape> static size_t get_workspace_size(ProblemShape const &, Arguments const &) {
    return 0;
  }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const &, Arguments const &, void *, cudaStream_t,
                                              cutlass::CudaHostAdapter * = nullptr) {
    return cutlass::Status::kSuccess;
  }

  CUTLASS_HOST_DEVICE Sm90RowVectors() {}
  CUTLASS_HOST_DEVICE Sm90RowVectors(Params const &params, SharedStorage const &shared_storage)
      : params(params), smem(const_cast<float *>(shared_storage.smem.data())) {}

  Params params;
  float *smem = nullptr;

  CUTLASS_DEVICE bool is_producer_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_C_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_zero() const { return false; }

  template <class... Args>
  CUTLASS_DEVICE auto get_producer_load_callbacks(fusion::ProducerLoadArgs<Args...> const &) {
    return fusion::EmptyProducerLoadCallbacks{};
  }

  template <class GS_GTensor, class GS_CTensor, class SR_STensor, class SR_RTensor, class Residue>
  struct ConsumerStoreCallbacks : fusion::EmptyConsumerStoreCallbacks {
    CUTLASS_DEVICE ConsumerStoreCallbacks(GS_GTensor tGS_gRow_, GS_CTensor tGS_cRow_, int n0_, float *smem_,
                                          SR_STensor const (&tSR_sRow_)[NumVectors], SR_RTensor tSR_rRow_,
                                          Residue residue_, Params const &params_)
        : tGS_gRow(tGS_gRow_), tGS_cRow(tGS_cRow_), n0(n0_), smem(smem_), residue(residue_), params(params_) {
      CUTLASS_PRAGMA_UNROLL
      for (int k = 0; k < NumVectors; ++k) {
        tSR_sRow[k] = tSR_sRow_[k];
        tSR_rRow[k] = tSR_rRow_;
      }
    }

    GS_GTensor tGS_gRow;  // (CPY, CPY_M, CPY_N): scale_w's columns this thread loads (M stride 0)
    GS_CTensor tGS_cRow;  // the same elements' tile-local coordinates
    int n0;               // the tile's first column
    float *smem;
    SR_STensor tSR_sRow[NumVectors];  // (CPY, CPY_M, CPY_N, EPI_M, EPI_N), vector k's smem
    SR_RTensor tSR_rRow[NumVectors];  // (CPY, CPY_M, CPY_N), vector k's values of the subtile
    Residue residue;
    Params const &params;

    // Every load first, then the stores: one L2 round trip for all the vectors.
    CUTLASS_DEVICE void begin() {
      Tensor c = filter_zeros(tGS_cRow, tGS_gRow.stride());
      constexpr int Count = decltype(size(c))::value;
      float v[NumVectors][Count];
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < Count; ++i) {
        int col = get<1>(c(i));
        bool in = col < CtaN && elem_less(c(i), residue);
        int g = n0 + col;
        v[0][i] = in ? params.scale_w[g] : 0.0f;
        v[1][i] = in && params.bias != nullptr ? static_cast<float>(params.bias[g]) : 0.0f;
        if constexpr (NumVectors == 3) v[NumVectors - 1][i] = in ? params.third[g] : 0.0f;
        if constexpr (Op::kPrepares) Op::prepare(v[NumVectors - 1][i]);
      }
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < Count; ++i) {
        int col = get<1>(c(i));
        if (col < CtaN) {
          CUTLASS_PRAGMA_UNROLL
          for (int k = 0; k < NumVectors; ++k) smem[k * CtaN + col] = v[k][i];
        }
      }
    }

    CUTLASS_DEVICE bool begin_sync_needed() const { return true; }

    CUTLASS_DEVICE void begin_loop(int epi_m, int epi_n) {
      if (epi_m == 0) {  // M-major subtile loop, as Sm90RowBroadcast assumes
        CUTLASS_PRAGMA_UNROLL
        for (int k = 0; k < NumVectors; ++k) {
          Tensor s = filter_zeros(tSR_sRow[k](_, _, _, epi_m, epi_n));
          Tensor r = make_tensor_like<float>(s);
          copy_aligned(s, r);
          Tensor dst = filter(tSR_rRow[k]);
          CUTLASS_PRAGMA_UNROLL
          for (int i = 0; i < size(r); ++i) dst(i) = r(i);
        }
      }
    }

    template <typename ElementAccumulator, typename ElementAcc, typename ElementX, int FragmentSize>
    CUTLASS_DEVICE auto visit(cutlass::Array<ElementAccumulator, FragmentSize> const &, int epi_v, int, int,
                              cutlass::Array<ElementAcc, FragmentSize> const &acc,
                              cutlass::Array<ElementX, FragmentSize> const &sx) {
      cutlass::Array<float, FragmentSize> rows[NumVectors];
      CUTLASS_PRAGMA_UNROLL
      for (int k = 0; k < NumVectors; ++k) {
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < FragmentSize; ++i) rows[k][i] = tSR_rRow[k](epi_v * FragmentSize + i);
      }
      return Op{}(acc, sx, rows);
    }
  };

  template <bool ReferenceSrc, class... Args>
  CUTLASS_DEVICE auto get_consumer_store_callbacks(fusion::ConsumerStoreArgs<Args...> const &args) {
    auto [M, N, K, L] = args.problem_shape_mnkl;
    auto [m, n, k, l] = args.tile_coord_mnkl;
    using ThreadCount = decltype(size(args.tiled_copy));
    constexpr int CtaM = size<0>(CtaTileShapeMNK{});
    int n0 = n * CtaN;
    // The loads: CtaN / threads columns each (Sm90RowBroadcast's G2S layout), over scale_w's
    // tile with a zero M stride (its strides say which coordinates repeat).
    Tensor gRow = make_tensor(make_gmem_ptr(params.scale_w + n0),
                              make_layout(make_shape(Int<CtaM>{}, Int<CtaN>{}), make_stride(_0{}, _1{})));
    auto tiled_g2s = make_tiled_copy(Copy_Atom<DefaultCopy, float>{},
                                     Layout<Shape<_1, ThreadCount>, Stride<_0, _1>>{}, Layout<_1>{});
    auto thr_g2s = tiled_g2s.get_slice(args.thread_idx);
    Tensor tGS_gRow = thr_g2s.partition_S(gRow);
    Tensor tGS_cRow = thr_g2s.partition_S(args.cD);
    // Shared to registers per subtile, as Sm90RowBroadcast, one smem row per vector.
    using SR = decltype(fusion::detail::sm90_partition_for_epilogue<ReferenceSrc>(
        make_tensor(make_smem_ptr(smem), make_shape(Int<CtaM>{}, Int<CtaN>{}), make_stride(_0{}, _1{})),
        args.epi_tile, args.tiled_copy, args.thread_idx));
    SR tSR_sRow[NumVectors];
    CUTLASS_PRAGMA_UNROLL
    for (int v = 0; v < NumVectors; ++v) {
      tSR_sRow[v] = fusion::detail::sm90_partition_for_epilogue<ReferenceSrc>(
          make_tensor(make_smem_ptr(smem + v * CtaN), make_shape(Int<CtaM>{}, Int<CtaN>{}),
                      make_stride(_0{}, _1{})),
          args.epi_tile, args.tiled_copy, args.thread_idx);
    }
    Tensor tSR_rRow = make_tensor_like<float>(take<0, 3>(tSR_sRow[0]));  // (CPY, CPY_M, CPY_N)
    return ConsumerStoreCallbacks<decltype(tGS_gRow), decltype(tGS_cRow), SR, decltype(tSR_rRow),
                                  decltype(args.residue_cD)>(tGS_gRow, tGS_cRow, n0, smem, tSR_sRow, tSR_rRow,
                                                             args.residue_cD, params);
  }
};

// gemm.cuh's 8-bit f16 output: fma(scale_w, acc * scale_x, bias), rounded to nearest f16.
struct DequantOp {
  using ElementAB = int8_t;
  using ElementBias = float;
  using ElementD = cutlass::half_t;
  static constexpr int NumVectors = 2;
  static constexpr bool kPrepares = false;
  template <class ElementAcc, int N>
  CUTLASS_DEVICE cutlass::Array<cutlass::half_t, N> operator()(cutlass::Array<ElementAcc, N> const &acc,
                                                               cutlass::Array<float, N> const &sx,
                                                               cutlass::Array<float, N> const (&rows)[2]) const {
    cutlass::Array<float, N> y;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = fmaf(rows[0][i], static_cast<float>(acc[i]) * sx[i], rows[1][i]);
    return cutlass::NumericArrayConverter<cutlass::half_t, float, N, cutlass::FloatRoundStyle::round_to_nearest>{}(y);
  }
};

// The int8 codes of gemm_codes_lean.cuh: rows[2] holds 1 / s_n.
struct CodesTanhOp {
  using ElementAB = int8_t;
  using ElementBias = float;
  using ElementD = int8_t;
  static constexpr int NumVectors = 3;
  static constexpr bool kPrepares = false;
  template <class ElementAcc, int N>
  CUTLASS_DEVICE cutlass::Array<int8_t, N> operator()(cutlass::Array<ElementAcc, N> const &acc,
                                                      cutlass::Array<float, N> const &sx,
                                                      cutlass::Array<float, N> const (&rows)[3]) const {
    static_assert(N % 4 == 0, "codes are packed four to a word");
    alignas(16) cutlass::Array<int8_t, N> out;
    uint32_t *words = reinterpret_cast<uint32_t *>(out.data());
    CUTLASS_PRAGMA_UNROLL
    for (int w = 0; w < N / 4; ++w) {
      uint32_t b[4];
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < 4; ++j) {
        int i = 4 * w + j;
        float y = fmaf(rows[0][i], static_cast<float>(acc[i]) * sx[i], rows[1][i]);
        float u = y * fmaf(y * y, 0.03537741f, 0.79868456f);
        float t;
        asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(u));
        float h = y * (0.5f * rows[2][i]);
        float v = fminf(fmaxf(fmaf(h, t, h), -127.0f), 127.0f);
        b[j] = __float_as_uint(v + 12582912.0f);
      }
      words[w] = __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
    }
    return out;
  }
};

// CodesTanhOp's codes with the GELU in f16 pairs. Session 9's profile (H200) found this
// epilogue issue-bound with one warp a scheduler (13.3 instructions a value, 128 values a thread
// a tile: the period of the ping-pong kernel); here a value costs 10.6 (SASS: 1363 instructions
// for a thread's 128 values against 1714): y = fma(scale_w, acc x
// scale_x, bias) and h = y (0.5 / s) in f32 (I2FP, FMUL, FFMA, FMUL; 0.5 / s folded once a tile,
// prepare), both packed to f16 pairs (satfinite), then two values at a time (HMUL2, HFMA2,
// tanh.approx.f16x2, HMNMX2): u = y (a + b y^2), t = tanh(u), GELU(y) / s = fma(h, t, h), clamped
// to +-127, + 1536 rounds it to an integer (ties to even; f16's step is 1 in [1024, 2048)) whose
// low byte is the code, four packed by one PRMT. Not the ~9 written down first: sm_90a has no
// paired MUFU.TANH, so tanh.approx.f16x2 is two MUFU.TANH.F16 and a PRMT to pair them (MUFU, the
// quarter-rate pipe, is not halved: 128 either way).
//   Precision: y, h and the fma are rounded to f16 (2^-11 relative), so a code moves by at most
// ~0.06 of a step at +-127 (tanh.approx.f32's own error already costs ~0.03 there): codes within
// one step of the f32 kernels', which the checks bound. y comes from f32, not from h x 2s, so no
// step is too small for f16 (2s would underflow below 3e-8). Range: satfinite keeps a huge y or
// h finite (fma(h, t, h) is then exactly 0 where t = -1); y^2 past f16's range is +inf, where
// tanh is +-1 as it should be; a NaN maps to -127 as in CodesTanhOp (HMNMX2 returns the other
// operand) and reaches FFN-out through the row's scale.
struct CodesHalf2Op {
  using ElementAB = int8_t;
  using ElementBias = float;
  using ElementD = int8_t;
  static constexpr int NumVectors = 3;
  static constexpr bool kPrepares = true;

  // The third vector, 1 / s, becomes 0.5 / s as it is loaded.
  CUTLASS_DEVICE static void prepare(float &inv) { inv *= 0.5f; }

  CUTLASS_DEVICE static __half2 pack_satfinite(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.satfinite.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return *reinterpret_cast<__half2 *>(&r);
  }

  // GELU(y) / s of values i and i + 1 as an f16 pair, unclamped and unrounded (rows[2] holds
  // 0.5 / s after prepare): what the int8 and E4M3 codes share.
  template <class ElementAcc, int N>
  CUTLASS_DEVICE static __half2 gelu_over_step(cutlass::Array<ElementAcc, N> const &acc,
                                               cutlass::Array<float, N> const &sx,
                                               cutlass::Array<float, N> const (&rows)[3], int i) {
    const __half2 a = __float2half2_rn(0.79868456f), b = __float2half2_rn(0.03537741f);
    float y0 = fmaf(rows[0][i], static_cast<float>(acc[i]) * sx[i], rows[1][i]);
    float y1 = fmaf(rows[0][i + 1], static_cast<float>(acc[i + 1]) * sx[i + 1], rows[1][i + 1]);
    __half2 y = pack_satfinite(y0, y1);
    __half2 h = pack_satfinite(y0 * rows[2][i], y1 * rows[2][i + 1]);
    __half2 t = h2tanh_approx(__hmul2(y, __hfma2(__hmul2(y, y), b, a)));
    return __hfma2(h, t, h);
  }

  template <class ElementAcc, int N>
  CUTLASS_DEVICE cutlass::Array<int8_t, N> operator()(cutlass::Array<ElementAcc, N> const &acc,
                                                      cutlass::Array<float, N> const &sx,
                                                      cutlass::Array<float, N> const (&rows)[3]) const {
    static_assert(N % 4 == 0, "codes are packed four to a word");
    const __half2 lo = __float2half2_rn(-127.0f), hi = __float2half2_rn(127.0f);
    const __half2 round = __float2half2_rn(1536.0f);
    alignas(16) cutlass::Array<int8_t, N> out;
    uint32_t *words = reinterpret_cast<uint32_t *>(out.data());
    CUTLASS_PRAGMA_UNROLL
    for (int w = 0; w < N / 4; ++w) {
      uint32_t two[2];
      CUTLASS_PRAGMA_UNROLL
      for (int p = 0; p < 2; ++p) {
        __half2 v = __hadd2(__hmin2(__hmax2(gelu_over_step(acc, sx, rows, 4 * w + 2 * p), lo), hi), round);
        two[p] = *reinterpret_cast<uint32_t *>(&v);
      }
      words[w] = __byte_perm(two[0], two[1], 0x6420);
    }
    return out;
  }
};

// E4M3 codes for an f16 model's FFN-out (fp8-fp16, static steps) with CodesHalf2Op's GELU: the
// E4M3 GEMM's f32 accumulators dequantized in f32 (scale_w, scale_x and the f16 bias), y and
// y (0.5 / s) packed to f16 pairs, the fitted tanh in pairs, and GELU(y) / s converted two at a
// time by cvt.rn.satfinite.e4m3x2.f16x2, which rounds to nearest even and clamps to +-448 (no
// clamp of ours, no +1536: E4M3's rounding is the conversion's). ~8.3 instructions a value
// written down first (FMUL, FFMA, FMUL, one F2FP a value; HMUL2, HFMA2, HMUL2, one HFMA2 and one
// F2FP.E4M3 a pair; MUFU.TANH.F16 a value and a PRMT a pair), against e4m3_codes_f16_gelu_co128's
// f32 erf (~30 a value in a cooperative epilogue).
//   Precision: E4M3's steps are relative (3 mantissa bits), so the GELU's absolute error, as
// large as 4e-4 |y| (the fitted tanh), moves a small code (|GELU(y)| << |y|: y < -2) by more than
// its step: the check bounds |code - standard| by one E4M3 step of the larger plus 6e-4 |y| / s.
// An FFN-out input error of 4e-4 |y| is 1/150 of E4M3's own rounding (1/16 relative) at |y| ~ 1.
// A NaN stays NaN (satfinite keeps it; the f32 kernel's clamp made it -448) and reaches its row
// of FFN-out's output.
struct CodesE4m3Half2Op {
  using ElementAB = cutlass::float_e4m3_t;
  using ElementBias = cutlass::half_t;
  using ElementD = cutlass::float_e4m3_t;
  static constexpr int NumVectors = 3;
  static constexpr bool kPrepares = true;

  CUTLASS_DEVICE static void prepare(float &inv) { inv *= 0.5f; }

  template <class ElementAcc, int N>
  CUTLASS_DEVICE cutlass::Array<cutlass::float_e4m3_t, N> operator()(cutlass::Array<ElementAcc, N> const &acc,
                                                                     cutlass::Array<float, N> const &sx,
                                                                     cutlass::Array<float, N> const (&rows)[3]) const {
    static_assert(N % 4 == 0, "codes are packed four to a word");
    alignas(16) cutlass::Array<cutlass::float_e4m3_t, N> out;
    uint32_t *words = reinterpret_cast<uint32_t *>(out.data());
    CUTLASS_PRAGMA_UNROLL
    for (int w = 0; w < N / 4; ++w) {
      uint32_t two[2];
      CUTLASS_PRAGMA_UNROLL
      for (int p = 0; p < 2; ++p) {
        __half2 v = CodesHalf2Op::gelu_over_step(acc, sx, rows, 4 * w + 2 * p);
        uint16_t e;
        asm("cvt.rn.satfinite.e4m3x2.f16x2 %0, %1;" : "=h"(e) : "r"(*reinterpret_cast<uint32_t *>(&v)));
        two[p] = e;
      }
      words[w] = two[0] | (two[1] << 16);
    }
    return out;
  }
};

template <class Tile, class Op> struct RowsEpilogue {
  using Acc = fusion::Sm90AccFetch;
  using ScaleX = fusion::Sm90ColBroadcast<0, Tile, float, float, Stride<_1, _0, int64_t>, 1>;
  using Rows = Sm90RowVectors<Tile, Op::NumVectors, Op>;
  using Tree = fusion::Sm90EVT<Rows, Acc, ScaleX>;

  static typename Tree::Arguments args(const float *scale_x, const float *scale_w,
                                       const typename Op::ElementBias *bias,
                                       const float *third) {
    return {{}, {scale_x, 0.0f, {}}, {scale_w, bias, third}};
  }
};

// D (m, n) = Op(A (m, k) row-major . B (n, k)^T), Op's 8-bit inputs (int8: int32 accumulators;
// E4M3: f32, promoted along K), with the epilogue subtile EpiTile.
template <class Op, class Config, class EpiTile = cutlass::epilogue::collective::EpilogueTileAuto>
struct GemmRows {
  using Tile = typename Config::Tile;
  using Cluster = typename Config::Cluster;
  using ElementD = typename Op::ElementD;
  using ElementAB = typename Op::ElementAB;
  using ElementAcc = typename std::conditional<std::is_same<ElementAB, int8_t>::value, int32_t, float>::type;
  using Ep = RowsEpilogue<Tile, Op>;
  static constexpr int kAlignAB = 16;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster, EpiTile, ElementAcc, float, void,
      cutlass::layout::RowMajor, kAlignD, ElementD, cutlass::layout::RowMajor, kAlignD,
      typename Config::EpilogueSchedule, typename Ep::Tree>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementAB, cutlass::layout::RowMajor, kAlignAB, ElementAB,
      cutlass::layout::ColumnMajor, kAlignAB, ElementAcc, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      typename Config::MainloopSchedule>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                      CollectiveEpilogue, cutlass::gemm::PersistentScheduler>;
  using Adapter = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static int run(const void *a, const void *b, const float *scale_x, const float *scale_w, const void *bias,
                 const float *third, void *d, int m, int n, int k, cudaStream_t stream) {
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
        {Ep::args(scale_x, scale_w, static_cast<const typename Op::ElementBias *>(bias), third), nullptr, sc,
         static_cast<ElementD *>(d), sd}};
    Adapter gemm;
    if (gemm.can_implement(args) != cutlass::Status::kSuccess) return kCannotImplement;
    if (Adapter::get_workspace_size(args) != 0) return kNeedsWorkspace;
    if (gemm.initialize(args, nullptr, stream) != cutlass::Status::kSuccess) return kInitFailed;
    if (gemm.run(stream) != cutlass::Status::kSuccess) return kLaunchFailed;
    return cudaPeekAtLastError() == cudaSuccess ? kOk : kLaunchFailed;
  }
};

using Epi64x64 = Shape<_64, _64>;
using Epi64x128 = Shape<_64, _128>;
using Pp128C1 = Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, k::KernelTmaWarpSpecializedPingpong,
                       e::TmaWarpSpecialized>;

}  // namespace runner_cutlass

// The f16 entry point (gemm.cuh's signature): runner_cutlass_<NAME>(a, b, scale_x, scale_w, bias,
// d, m, n, k, stream).
#define RUNNER_CUTLASS_GEMM_ROWS_F16(NAME, EPI_TILE, CONFIG)                                             \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, void *d, int m, int n,  \
                                       int k, cudaStream_t stream) {                                   \
    using G = runner_cutlass::GemmRows<runner_cutlass::DequantOp, runner_cutlass::CONFIG,               \
                                       runner_cutlass::EPI_TILE>;                                       \
    return G::run(a, b, scale_x, scale_w, bias, nullptr, d, m, n, k, stream);                           \
  }
// The codes entry points (gemm_codes.cuh's signature, f32 bias).
#define RUNNER_CUTLASS_GEMM_ROWS_CODES(NAME, EPI_TILE, CONFIG) RUNNER_CUTLASS_GEMM_ROWS_CODES_OP(NAME, CodesTanhOp, EPI_TILE, CONFIG)
#define RUNNER_CUTLASS_GEMM_ROWS_CODES_HALF2(NAME, EPI_TILE, CONFIG) RUNNER_CUTLASS_GEMM_ROWS_CODES_OP(NAME, CodesHalf2Op, EPI_TILE, CONFIG)
#define RUNNER_CUTLASS_GEMM_ROWS_CODES_E4M3_HALF2(NAME, EPI_TILE, CONFIG) RUNNER_CUTLASS_GEMM_ROWS_CODES_OP(NAME, CodesE4m3Half2Op, EPI_TILE, CONFIG)
// The codes entry points (gemm_codes.cuh's signature; the bias is Op's: f32 for int8, f16 for E4M3).
#define RUNNER_CUTLASS_GEMM_ROWS_CODES_OP(NAME, OP, EPI_TILE, CONFIG)                                     \
  extern "C" int runner_cutlass_##NAME(const void *a, const void *b, const float *scale_x,              \
                                       const float *scale_w, const void *bias, const float *inv_scale, \
                                       void *d, int m, int n, int k, cudaStream_t stream) {            \
    using G = runner_cutlass::GemmRows<runner_cutlass::OP, runner_cutlass::CONFIG,                      \
                                       runner_cutlass::EPI_TILE>;                                       \
    return G::run(a, b, scale_x, scale_w, bias, inv_scale, d, m, n, k, stream);                         \
  }
