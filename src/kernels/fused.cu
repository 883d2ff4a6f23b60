// The runner's own CUDA kernels, compiled to PTX by build.rs (feature "cuda") and loaded by
// src/model/fused.rs. Each replaces candle kernels that an H100 profile showed far from the GPU's
// memory bandwidth (docs/results/*-speed/NOTES.md): bias (+ GELU), the QKV bias add + head split,
// mask + softmax, the head merge, residual add + layer norm. Arithmetic is in f32 whatever the
// storage type, rounded once on the store.
//
// Kernels named *_vec move 16 bytes per thread (8 f16/bf16 or 4 f32 values); the launcher picks
// them when every row (or head) width and every input offset is a multiple of that, else the
// one-value-per-thread version of the same code.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
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

// bias_{none|gelu}: out[r, c] = act(x[r, c] + bias[c]) for a contiguous (rows, cols) x: candle's
// broadcast add read the bias through a generic strided index (~160 GB/s, three times the GEMM
// before it) and GELU was a second pass.
template <typename T, bool GELU, int N>
__device__ void bias_act(const T *x, const T *bias, T *out, uint32_t rows, uint32_t cols) {
    GRID_STRIDE(i, (size_t)rows * cols / N) {
        const size_t e = i * N;
        alignas(16) T xv[N];
        alignas(16) T bv[N];
        copy_vec<T, N>(xv, x + e);
        copy_vec<T, N>(bv, bias + e % cols);
#pragma unroll
        for (int k = 0; k < N; ++k) xv[k] = from_f32<T>(act<GELU>(to_f32(xv[k]) + to_f32(bv[k])));
        copy_vec<T, N>(out + e, xv);
    }
}

// qkv_heads: the fused Q/K/V GEMM's output x (batch * seq, 3 * heads * head_dim) plus its bias,
// written as (3, batch, heads, seq, head_dim): Q, K and V each contiguous per head, as the
// attention GEMMs need. Replaces a bias pass and candle's strided copy (365 us a block at batch 64).
template <typename T, int N>
__device__ void qkv_heads(const T *x, const T *bias, T *out, uint32_t rows, uint32_t seq,
                          uint32_t heads, uint32_t head_dim) {
    const uint32_t width = heads * head_dim, cols = 3 * width, batch = rows / seq;
    GRID_STRIDE(i, (size_t)rows * cols / N) {
        const size_t e = i * N;
        const uint32_t r = e / cols, c = e % cols;
        const uint32_t which = c / width, h = (c % width) / head_dim, d = c % head_dim;
        const uint32_t b = r / seq, s = r % seq;
        alignas(16) T xv[N];
        alignas(16) T bv[N];
        copy_vec<T, N>(xv, x + e);
        copy_vec<T, N>(bv, bias + c);
#pragma unroll
        for (int k = 0; k < N; ++k) xv[k] = from_f32<T>(to_f32(xv[k]) + to_f32(bv[k]));
        const size_t o = ((((size_t)which * batch + b) * heads + h) * seq + s) * head_dim + d;
        copy_vec<T, N>(out + o, xv);
    }
}

// merge_heads: attention context (batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim).
template <typename T, int N>
__device__ void merge_heads(const T *x, T *out, uint32_t batch, uint32_t heads, uint32_t seq,
                            uint32_t head_dim) {
    const uint32_t width = heads * head_dim;
    GRID_STRIDE(i, (size_t)batch * seq * width / N) {
        const size_t e = i * N;
        const uint32_t r = e / width, c = e % width;
        const uint32_t b = r / seq, s = r % seq, h = c / head_dim, d = c % head_dim;
        const size_t src = (((size_t)b * heads + h) * seq + s) * head_dim + d;
        alignas(16) T v[N];
        copy_vec<T, N>(v, x + src);
        copy_vec<T, N>(out + e, v);
    }
}

// One warp's sum, broadcast to every lane.
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
    return v;
}

// add_layer_norm: layer_norm(x + residual) over rows of cols values, gamma_beta = (2, cols). The
// sum is rounded to T first, exactly as the plain path's separate add stores it; mean and variance
// in two passes in f32. One warp per row; the row's 1.5 KB stay in L1 between passes.
template <typename T, int N>
__device__ void add_layer_norm(const T *x, const T *residual, const T *gamma_beta, T *out,
                               uint32_t rows, uint32_t cols, float eps) {
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols;
    const T *rr = residual + (size_t)row * cols;
    T *o = out + (size_t)row * cols;
    auto load = [&](uint32_t c, float *v) {
        alignas(16) T xv[N];
        alignas(16) T rv[N];
        copy_vec<T, N>(xv, xr + c);
        copy_vec<T, N>(rv, rr + c);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = to_f32(from_f32<T>(to_f32(xv[k]) + to_f32(rv[k])));
    };
    float v[N];
    float sum = 0.0f;
    for (uint32_t c = lane * N; c < cols; c += 32 * N) {
        load(c, v);
#pragma unroll
        for (int k = 0; k < N; ++k) sum += v[k];
    }
    const float mean = warp_sum(sum) / cols;
    float sq = 0.0f;
    for (uint32_t c = lane * N; c < cols; c += 32 * N) {
        load(c, v);
#pragma unroll
        for (int k = 0; k < N; ++k) sq += (v[k] - mean) * (v[k] - mean);
    }
    const float rstd = rsqrtf(warp_sum(sq) / cols + eps);
    for (uint32_t c = lane * N; c < cols; c += 32 * N) {
        load(c, v);
        alignas(16) T g[N];
        alignas(16) T b[N];
        alignas(16) T y[N];
        copy_vec<T, N>(g, gamma_beta + c);
        copy_vec<T, N>(b, gamma_beta + cols + c);
#pragma unroll
        for (int k = 0; k < N; ++k) y[k] = from_f32<T>((v[k] - mean) * rstd * to_f32(g[k]) + to_f32(b[k]));
        copy_vec<T, N>(o + c, y);
    }
}

// masked_softmax: softmax over the last dimension of contiguous attention scores
// (batch, heads, queries, keys) after adding the f32 additive mask (batch, keys), in one pass over
// the scores: candle's broadcast add ran at ~130 GB/s and its softmax was a second pass. One warp
// per row, N consecutive values per lane and load (N = 4 in the _vec version: 8-byte f16/bf16 and
// 16-byte f32 loads, every lane busy at 128 keys), f32 arithmetic, one rounding on the store. A fully
// masked row (mask at f32's lowest) comes out uniform, never NaN.
template <typename T, int N>
__device__ void masked_softmax(const T *x, const float *mask, T *out, uint32_t rows, uint32_t cols,
                               uint32_t rows_per_batch) {
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols;
    const float *m = mask + (size_t)(row / rows_per_batch) * cols;
    T *o = out + (size_t)row * cols;
    auto load = [&](uint32_t c, float *v) {
        alignas(16) T xv[N];
        alignas(16) float mv[N];
        copy_vec<T, N>(xv, xr + c);
        copy_vec<float, N>(mv, m + c);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = to_f32(xv[k]) + mv[k];
    };
    float v[N];
    float mx = -INFINITY;
    for (uint32_t c = lane * N; c < cols; c += 32 * N) {
        load(c, v);
#pragma unroll
        for (int k = 0; k < N; ++k) mx = fmaxf(mx, v[k]);
    }
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, off));
    float sum = 0.0f;
    for (uint32_t c = lane * N; c < cols; c += 32 * N) {
        load(c, v);
#pragma unroll
        for (int k = 0; k < N; ++k) sum += expf(v[k] - mx);
    }
    const float inv = 1.0f / warp_sum(sum);
    for (uint32_t c = lane * N; c < cols; c += 32 * N) {
        load(c, v);
        alignas(16) T y[N];
#pragma unroll
        for (int k = 0; k < N; ++k) y[k] = from_f32<T>(expf(v[k] - mx) * inv);
        copy_vec<T, N>(o + c, y);
    }
}

// Exported entry points: NAME_{f32,f16,bf16}, and NAME_vec_{...} for the 16-byte versions.
#define EACH_DTYPE(M, NAME) M(NAME##_f32, float, 1) M(NAME##_f16, __half, 1) M(NAME##_bf16, __nv_bfloat16, 1) \
    M(NAME##_vec_f32, float, 4) M(NAME##_vec_f16, __half, 8) M(NAME##_vec_bf16, __nv_bfloat16, 8)

#define BIAS_NONE(NAME, T, N) extern "C" __global__ void NAME(const T *x, const T *bias, T *out, uint32_t rows, uint32_t cols) \
    { bias_act<T, false, N>(x, bias, out, rows, cols); }
#define BIAS_GELU(NAME, T, N) extern "C" __global__ void NAME(const T *x, const T *bias, T *out, uint32_t rows, uint32_t cols) \
    { bias_act<T, true, N>(x, bias, out, rows, cols); }
#define QKV_HEADS(NAME, T, N) extern "C" __global__ void NAME(const T *x, const T *bias, T *out, uint32_t rows, \
    uint32_t seq, uint32_t heads, uint32_t head_dim) { qkv_heads<T, N>(x, bias, out, rows, seq, heads, head_dim); }
#define MERGE_HEADS(NAME, T, N) extern "C" __global__ void NAME(const T *x, T *out, uint32_t batch, uint32_t heads, \
    uint32_t seq, uint32_t head_dim) { merge_heads<T, N>(x, out, batch, heads, seq, head_dim); }
#define ADD_LAYER_NORM(NAME, T, N) extern "C" __global__ void NAME(const T *x, const T *residual, const T *gamma_beta, \
    T *out, uint32_t rows, uint32_t cols, float eps) { add_layer_norm<T, N>(x, residual, gamma_beta, out, rows, cols, eps); }

EACH_DTYPE(BIAS_NONE, bias_none)
EACH_DTYPE(BIAS_GELU, bias_gelu)
EACH_DTYPE(QKV_HEADS, qkv_heads)
EACH_DTYPE(MERGE_HEADS, merge_heads)
EACH_DTYPE(ADD_LAYER_NORM, add_layer_norm)

#define MASKED_SOFTMAX(NAME, T, N) extern "C" __global__ void NAME(const T *x, const float *mask, T *out, \
    uint32_t rows, uint32_t cols, uint32_t rows_per_batch) { masked_softmax<T, N>(x, mask, out, rows, cols, rows_per_batch); }

MASKED_SOFTMAX(masked_softmax_f32, float, 1)
MASKED_SOFTMAX(masked_softmax_f16, __half, 1)
MASKED_SOFTMAX(masked_softmax_bf16, __nv_bfloat16, 1)
MASKED_SOFTMAX(masked_softmax_vec_f32, float, 4)
MASKED_SOFTMAX(masked_softmax_vec_f16, __half, 4)
MASKED_SOFTMAX(masked_softmax_vec_bf16, __nv_bfloat16, 4)
