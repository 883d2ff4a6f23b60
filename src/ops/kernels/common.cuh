// What the runner's kernel files share (src/ops/kernels/fused.cu, src/ops/kernels/eight_bit.cu):
// conversions between the storage types and f32, vector copies, erf GELU, loop and warp helpers.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

// Programmatic Dependent Launch (src/ops/decode/launch.rs). pdl_wait: block until the grid this
// one was programmatically launched after has completed and its writes are visible (a no-op when
// launched plainly, or before sm_90); every kernel so launched calls it before reading its
// predecessor's output or writing anything. pdl_trigger: let the next programmatically launched
// grid start its blocks (they still wait for this grid's completion before touching its output).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
// A hint to bring the 128-byte line holding `p` into L2 (no register, no wait).
__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

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

// erf GELU, x * Phi(x) (candle's gelu_erf, PyTorch's default GELU), with Phi through erfc:
// Numerical Recipes' erfcc (fractional error < 1.2e-7 for every argument), approximate reciprocal
// and exponential. ~20 FP32 operations a value, where 0.5 x (1 + erff(x / sqrt 2)) took ~35 (erff
// evaluates both of its ranges' polynomials and selects): the fused GELU + quantization kernels
// were bound by that arithmetic. Same absolute error (<= 4e-7, host-side check over -12..12 in
// f32), and none of the old form's cancellation for very negative x, where 1 + erf loses every
// digit (relative error there 1.7e-5 instead of up to 100 %).
__device__ __forceinline__ float gelu_erf(float x) {
    const float z = fabsf(x) * 0.7071067811865476f;
    const float t = __fdividef(1.0f, fmaf(0.5f, z, 1.0f));
    float p = 0.17087277f;
    p = fmaf(p, t, -0.82215223f);
    p = fmaf(p, t, 1.48851587f);
    p = fmaf(p, t, -1.13520398f);
    p = fmaf(p, t, 0.27886807f);
    p = fmaf(p, t, -0.18628806f);
    p = fmaf(p, t, 0.09678418f);
    p = fmaf(p, t, 0.37409196f);
    p = fmaf(p, t, 1.00002368f);
    p = fmaf(p, t, -1.26551223f);
    // 0.5 erfc(|x| / sqrt 2) = Phi(-|x|)
    const float tail = 0.5f * t * __expf(fmaf(-z, z, p));
    return x * (x >= 0.0f ? 1.0f - tail : tail);
}

template <bool GELU> __device__ __forceinline__ float act(float v) { return GELU ? gelu_erf(v) : v; }

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
// passes in f32. Rows of up to 32 * N * CHUNKS values (1024 in f16/bf16, DistilBERT's 768 and
// MiniLM's 384) are read once and kept in registers; wider ones are re-read from L1 per pass
// (the first version re-read every row three times, four when quantizing: 2.9 TB/s at 8192 x 768).
// BIAS: gamma_beta is (3, cols), its third row the preceding linear's bias, added to x first and
// rounded to T as the bias kernel stores it.
template <typename T, int N, bool BIAS, int CHUNKS = 4> struct ResidualNormRow {
    const T *xr, *rr, *gamma_beta;
    uint32_t cols, lane;
    float mean, rstd;
    bool cached;
    float v[CHUNKS][N];

    __device__ ResidualNormRow(const T *x, const T *residual, const T *gamma_beta_, uint32_t row, uint32_t cols_,
                               uint32_t lane_, float eps)
        : xr(x + (size_t)row * cols_), rr(residual + (size_t)row * cols_), gamma_beta(gamma_beta_), cols(cols_),
          lane(lane_), cached(cols_ <= 32 * N * CHUNKS) {
        float sum = 0.0f, sq = 0.0f;
        if (cached) {
#pragma unroll
            for (int j = 0; j < CHUNKS; ++j) {
                const uint32_t c = (j * 32 + lane) * N;
                if (c < cols) {
                    load(c, v[j]);
#pragma unroll
                    for (int k = 0; k < N; ++k) sum += v[j][k];
                }
            }
            mean = warp_sum(sum) / cols;
#pragma unroll
            for (int j = 0; j < CHUNKS; ++j) {
                if ((j * 32 + lane) * N < cols) {
#pragma unroll
                    for (int k = 0; k < N; ++k) sq += (v[j][k] - mean) * (v[j][k] - mean);
                }
            }
        } else {
            float w[N];
            for (uint32_t c = lane * N; c < cols; c += 32 * N) {
                load(c, w);
#pragma unroll
                for (int k = 0; k < N; ++k) sum += w[k];
            }
            mean = warp_sum(sum) / cols;
            for (uint32_t c = lane * N; c < cols; c += 32 * N) {
                load(c, w);
#pragma unroll
                for (int k = 0; k < N; ++k) sq += (w[k] - mean) * (w[k] - mean);
            }
        }
        rstd = rsqrtf(warp_sum(sq) / cols + eps);
    }

    __device__ __forceinline__ void load(uint32_t c, float *w) const {
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
        for (int k = 0; k < N; ++k) w[k] = to_f32(from_f32<T>(to_f32(xv[k]) + to_f32(rv[k])));
    }

    __device__ __forceinline__ void normalize(uint32_t c, const float *w, T *y) const {
        alignas(16) T g[N];
        alignas(16) T b[N];
        copy_vec<T, N>(g, gamma_beta + c);
        copy_vec<T, N>(b, gamma_beta + cols + c);
#pragma unroll
        for (int k = 0; k < N; ++k) y[k] = from_f32<T>((w[k] - mean) * rstd * to_f32(g[k]) + to_f32(b[k]));
    }

    // emit(c, y) for each of this lane's N-value pieces of the normalized row, rounded to T (the
    // same values on every call), in order.
    template <typename Emit> __device__ __forceinline__ void each(Emit emit) const {
        if (cached) {
#pragma unroll
            for (int j = 0; j < CHUNKS; ++j) {
                const uint32_t c = (j * 32 + lane) * N;
                if (c < cols) {
                    alignas(16) T y[N];
                    normalize(c, v[j], y);
                    emit(c, y);
                }
            }
        } else {
            for (uint32_t c = lane * N; c < cols; c += 32 * N) {
                float w[N];
                load(c, w);
                alignas(16) T y[N];
                normalize(c, w, y);
                emit(c, y);
            }
        }
    }
};
