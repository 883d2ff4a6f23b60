// What the runner's kernel files share (src/kernels/fused.cu, src/kernels/eight_bit.cu):
// conversions between the storage types and f32, vector copies, erf GELU, loop and warp helpers.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// N consecutive values; one 16- or 8-byte transaction when N values are that wide (the launcher
// checks alignment).
template <typename T, int N> __device__ __forceinline__ void copy_vec(T *dst, const T *src) {
    if constexpr (N * sizeof(T) == 16) {
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    } else if constexpr (N * sizeof(T) == 8) {
        *reinterpret_cast<uint2 *>(dst) = *reinterpret_cast<const uint2 *>(src);
    } else {
#pragma unroll
        for (int k = 0; k < N; ++k) dst[k] = src[k];
    }
}

template <bool GELU> __device__ __forceinline__ float act(float v) {
    // erf GELU, as candle's gelu_erf and PyTorch's default GELU.
    return GELU ? 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)) : v;
}

#define GRID_STRIDE(i, total) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (size_t)gridDim.x * blockDim.x)

// One warp's sum, broadcast to every lane.
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
    return v;
}


// One row of layer_norm(x + residual) (one warp, N consecutive values per lane and load), as
// add_layer_norm (fused.cu) and add_layer_norm_quantize (eight_bit.cu) write it. The sum is
// rounded to T first, exactly as the plain path's separate add stores it; mean and variance in two
// passes in f32 (the row stays in L1 between passes). BIAS: gamma_beta is (3, cols), its third row
// the preceding linear's bias, added to x first and rounded to T as the bias kernel stores it.
template <typename T, int N, bool BIAS> struct ResidualNormRow {
    const T *xr, *rr, *gamma_beta;
    uint32_t cols, lane;
    float mean, rstd;

    __device__ ResidualNormRow(const T *x, const T *residual, const T *gamma_beta_, uint32_t row, uint32_t cols_,
                               uint32_t lane_, float eps)
        : xr(x + (size_t)row * cols_), rr(residual + (size_t)row * cols_), gamma_beta(gamma_beta_), cols(cols_),
          lane(lane_) {
        float v[N];
        float sum = 0.0f;
        for (uint32_t c = lane * N; c < cols; c += 32 * N) {
            load(c, v);
#pragma unroll
            for (int k = 0; k < N; ++k) sum += v[k];
        }
        mean = warp_sum(sum) / cols;
        float sq = 0.0f;
        for (uint32_t c = lane * N; c < cols; c += 32 * N) {
            load(c, v);
#pragma unroll
            for (int k = 0; k < N; ++k) sq += (v[k] - mean) * (v[k] - mean);
        }
        rstd = rsqrtf(warp_sum(sq) / cols + eps);
    }

    __device__ __forceinline__ void load(uint32_t c, float *v) const {
        alignas(16) T xv[N];
        alignas(16) T rv[N];
        copy_vec<T, N>(xv, xr + c);
        copy_vec<T, N>(rv, rr + c);
        if constexpr (BIAS) {
            alignas(16) T bv[N];
            copy_vec<T, N>(bv, gamma_beta + 2 * (size_t)cols + c);
#pragma unroll
            for (int k = 0; k < N; ++k) xv[k] = from_f32<T>(to_f32(xv[k]) + to_f32(bv[k]));
        }
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = to_f32(from_f32<T>(to_f32(xv[k]) + to_f32(rv[k])));
    }

    // The normalized values c .. c + N - 1, rounded to T (the same on every call).
    __device__ __forceinline__ void values(uint32_t c, T *y) const {
        float v[N];
        load(c, v);
        alignas(16) T g[N];
        alignas(16) T b[N];
        copy_vec<T, N>(g, gamma_beta + c);
        copy_vec<T, N>(b, gamma_beta + cols + c);
#pragma unroll
        for (int k = 0; k < N; ++k) y[k] = from_f32<T>((v[k] - mean) * rstd * to_f32(g[k]) + to_f32(b[k]));
    }
};
