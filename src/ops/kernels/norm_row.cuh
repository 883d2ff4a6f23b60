// The residual + layer norm row of f16/bf16 models in pairs (issue 31): what ResidualNormRow
// (common.cuh) computes for N = 8, the same values bit for bit, with about half the instructions,
// so that the norm kernels (fused.cu's add_layer_norm_h2, eight_bit.cu's add_layer_norm_quantize
// h2 versions) are no longer issue-bound. An H200 profile (docs/results/2026-12-06-nvidia-h200-
// cutlass-epilogue/call1) ran add_layer_norm_quantize_i8_vec_f16 at 16.8 us for 8192 x 768
// against ~6 us of DRAM bytes, with ~1000 warp instructions a row (42 a value: every value
// converted to f32 and back several times, the normalize and the gamma/beta loads done twice,
// roundf's fix-ups) at 72 registers (3 blocks an SM, 2.6 waves). Here:
// - the residual add in pairs (HADD2): a sum of two 16-bit values rounded once to 16 bits is the
//   f32 sum rounded to 16 bits (the f32 sum is exact unless the smaller value is under a quarter
//   of the larger's last place, and then both round to the larger), so the same values;
// - the row held as 16-bit pairs (16 registers for 1024 columns instead of 32 floats), converted
//   for the mean and variance in the same order as ResidualNormRow (same sums, same bits);
// - the normalized row computed once, in pairs, and kept for the quantization;
// - the row's largest magnitude in pairs (HMNMX2 that propagates NaN: a NaN anywhere gives NaN).
// Rows of up to 32 * 8 * 4 = 1024 values, a multiple of 8, 16-byte aligned (the launchers check).
#pragma once
#include "common.cuh"

template <typename T> struct Pair;
template <> struct Pair<__half> {
    using T2 = __half2;
    static __device__ __forceinline__ float2 f32(__half2 v) { return __half22float2(v); }
    static __device__ __forceinline__ __half2 round(float a, float b) { return __floats2half2_rn(a, b); }
};
template <> struct Pair<__nv_bfloat16> {
    using T2 = __nv_bfloat162;
    static __device__ __forceinline__ float2 f32(__nv_bfloat162 v) { return __bfloat1622float2(v); }
    static __device__ __forceinline__ __nv_bfloat162 round(float a, float b) { return __floats2bfloat162_rn(a, b); }
};

constexpr int PAIR_CHUNKS = 4;
constexpr uint32_t PAIR_MAX_COLS = 32 * 8 * PAIR_CHUNKS;

// BIAS: gamma_beta is (3, cols), its third row the preceding linear's bias, added to x first and
// rounded (as ResidualNormRow<T, 8, true>).
template <typename T, bool BIAS> struct PairNormRow {
    using P = Pair<T>;
    using T2 = typename P::T2;
    const T *gamma_beta;
    uint32_t cols, lane;
    float mean, rstd;
    T2 v[PAIR_CHUNKS][4];

    __device__ PairNormRow(const T *x, const T *residual, const T *gamma_beta_, uint32_t row, uint32_t cols_,
                           uint32_t lane_, float eps)
        : gamma_beta(gamma_beta_), cols(cols_), lane(lane_) {
        const T *xr = x + (size_t)row * cols;
        const T *rr = residual + (size_t)row * cols;
        float sum = 0.0f, sq = 0.0f;
#pragma unroll
        for (int j = 0; j < PAIR_CHUNKS; ++j) {
            const uint32_t c = (j * 32 + lane) * 8;
            if (c < cols) {
                uint4 a = *reinterpret_cast<const uint4 *>(xr + c);
                const uint4 b = *reinterpret_cast<const uint4 *>(rr + c);
                T2 *pa = reinterpret_cast<T2 *>(&a);
                const T2 *pb = reinterpret_cast<const T2 *>(&b);
                if constexpr (BIAS) {
                    const uint4 bias = *reinterpret_cast<const uint4 *>(gamma_beta + 2 * (size_t)cols + c);
                    const T2 *pc = reinterpret_cast<const T2 *>(&bias);
#pragma unroll
                    for (int k = 0; k < 4; ++k) pa[k] = __hadd2(pa[k], pc[k]);
                }
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    v[j][k] = __hadd2(pa[k], pb[k]);
                    const float2 f = P::f32(v[j][k]);
                    sum += f.x;
                    sum += f.y;
                }
            }
        }
        mean = warp_sum(sum) / cols;
#pragma unroll
        for (int j = 0; j < PAIR_CHUNKS; ++j) {
            if ((j * 32 + lane) * 8 < cols) {
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    const float2 f = P::f32(v[j][k]);
                    sq += (f.x - mean) * (f.x - mean);
                    sq += (f.y - mean) * (f.y - mean);
                }
            }
        }
        rstd = rsqrtf(warp_sum(sq) / cols + eps);
    }

    // y = the normalized chunk j (8 values from column (j * 32 + lane) * 8), rounded to T as
    // ResidualNormRow::normalize rounds them.
    __device__ __forceinline__ void normalize(int j, T2 *y) const {
        const uint32_t c = (j * 32 + lane) * 8;
        const uint4 g = *reinterpret_cast<const uint4 *>(gamma_beta + c);
        const uint4 b = *reinterpret_cast<const uint4 *>(gamma_beta + cols + c);
        const T2 *pg = reinterpret_cast<const T2 *>(&g);
        const T2 *pb = reinterpret_cast<const T2 *>(&b);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const float2 w = P::f32(v[j][k]), gf = P::f32(pg[k]), bf = P::f32(pb[k]);
            y[k] = P::round((w.x - mean) * rstd * gf.x + bf.x, (w.y - mean) * rstd * gf.y + bf.y);
        }
    }

    __device__ __forceinline__ bool has(int j) const { return (j * 32 + lane) * 8 < cols; }
};

// The int8 code of v * inv as quantize_one<false> (eight_bit.cu) gives it, clamp(roundf(v * inv),
// -127, 127), without FRND's fix-ups: clamped first (the bounds are integers, so the same), then
// rounded half away from zero as trunc(t + copysign(0.5 - 2^-25, t)), which equals roundf(t) for
// every float |t| <= 127 (checked exhaustively on the host: 2.2e9 values, none differ).
__device__ __forceinline__ int code_i8(float v, float inv) {
    const float t = fminf(fmaxf(v * inv, -127.0f), 127.0f);
    return __float2int_rz(__fadd_rn(t, copysignf(0.49999997f, t)));
}

// Four codes (low bytes of a, b, c, d) in one word, a first.
__device__ __forceinline__ uint32_t pack4(int a, int b, int c, int d) {
    return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}
