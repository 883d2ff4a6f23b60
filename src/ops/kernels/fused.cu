// The runner's own CUDA kernels, compiled to PTX by build.rs (feature "cuda") and loaded by
// src/ops/fused.rs. Each replaces candle kernels that an H100 profile showed far from the GPU's
// memory bandwidth (docs/results/*-speed/NOTES.md): bias (+ GELU), the QKV bias add + head split,
// mask + softmax, the head merge, residual add + layer norm. Arithmetic is in f32 whatever the
// storage type, rounded once on the store.
//
// Kernels named *_vec move 16 bytes per thread (8 f16/bf16 or 4 f32 values); the launcher picks
// them when every row (or head) width and every input offset is a multiple of that, else the
// one-value-per-thread version of the same code.
#include "common.cuh"
#include "norm_row.cuh"
#include <cooperative_groups.h>

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

// add_layer_norm: layer_norm(x + residual) over rows of cols values, gamma_beta = (2, cols), or
// (3, cols) with the preceding linear's bias when BIAS (common.cuh's ResidualNormRow). One warp
// per row.
template <typename T, int N, bool BIAS = false>
__device__ void add_layer_norm(const T *x, const T *residual, const T *gamma_beta, T *out,
                               uint32_t rows, uint32_t cols, float eps) {
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const ResidualNormRow<T, N, BIAS> norm(x, residual, gamma_beta, row, cols, lane, eps);
    T *o = out + (size_t)row * cols;
    norm.each([&](uint32_t c, const T *y) { copy_vec<T, N>(o + c, y); });
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
#define BIAS_ADD_LAYER_NORM(NAME, T, N) extern "C" __global__ void NAME(const T *x, const T *residual, \
    const T *gamma_beta_bias, T *out, uint32_t rows, uint32_t cols, float eps) \
    { add_layer_norm<T, N, true>(x, residual, gamma_beta_bias, out, rows, cols, eps); }

// add_layer_norm_h2: add_layer_norm for f16/bf16 rows of at most PAIR_MAX_COLS values, a multiple of
// 8, 16-byte aligned (norm_row.cuh: the same values in half the instructions). One warp per row.
template <typename T, bool BIAS>
__device__ void add_layer_norm_h2(const T *x, const T *residual, const T *gamma_beta, T *out, uint32_t rows,
                                  uint32_t cols, float eps) {
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const PairNormRow<T, BIAS> norm(x, residual, gamma_beta, row, cols, lane, eps);
    T *o = out + (size_t)row * cols;
#pragma unroll
    for (int j = 0; j < PAIR_CHUNKS; ++j) {
        if (norm.has(j)) {
            alignas(16) typename Pair<T>::T2 y[4];
            norm.normalize(j, y);
            *reinterpret_cast<uint4 *>(o + (j * 32 + lane) * 8) = *reinterpret_cast<const uint4 *>(y);
        }
    }
}
#define ADD_LAYER_NORM_H2(NAME, T, BIAS) extern "C" __global__ void NAME(const T *x, const T *residual, \
    const T *gamma_beta, T *out, uint32_t rows, uint32_t cols, float eps) \
    { add_layer_norm_h2<T, BIAS>(x, residual, gamma_beta, out, rows, cols, eps); }
ADD_LAYER_NORM_H2(add_layer_norm_h2_f16, __half, false)
ADD_LAYER_NORM_H2(add_layer_norm_h2_bf16, __nv_bfloat16, false)
ADD_LAYER_NORM_H2(bias_add_layer_norm_h2_f16, __half, true)
ADD_LAYER_NORM_H2(bias_add_layer_norm_h2_bf16, __nv_bfloat16, true)

EACH_DTYPE(BIAS_NONE, bias_none)
EACH_DTYPE(BIAS_GELU, bias_gelu)
EACH_DTYPE(QKV_HEADS, qkv_heads)
EACH_DTYPE(MERGE_HEADS, merge_heads)
EACH_DTYPE(ADD_LAYER_NORM, add_layer_norm)
EACH_DTYPE(BIAS_ADD_LAYER_NORM, bias_add_layer_norm)

// embed_layer_norm: an encoder's embeddings in one pass, layer_norm(word[ids[r]] + table[r % seq]),
// table = (positions + 2, cols): the position rows (BERT's token-type-0 row already added and
// rounded to T, as the plain path's broadcast add stores it), then the norm's gamma and beta.
// Replaces candle's gather, its broadcast add (~115 us at batch 64 on the H100) and the layer norm:
// per row it reads one word row and one position row and writes one row (floor in
// docs/results/2026-12-06-nvidia-h100-cutlass/NOTES.md). The sum is rounded to T before the norm,
// as the plain path stores it. An id outside the vocabulary gives a NaN row (the plain path errors
// or reads garbage): never a silent value. One warp per row.
template <typename T, int N>
__device__ void embed_layer_norm(const T *word, const uint32_t *ids, const T *table, T *out, uint32_t rows,
                                 uint32_t seq, uint32_t vocab, uint32_t positions, uint32_t cols, float eps) {
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const uint32_t id = ids[row];
    T *o = out + (size_t)row * cols;
    if (id >= vocab) {
        for (uint32_t c = lane; c < cols; c += 32) o[c] = from_f32<T>(NAN);
        return;
    }
    const T *gamma_beta = table + (size_t)positions * cols;
    const ResidualNormRow<T, N, false> norm(word + (size_t)id * cols, table + (size_t)(row % seq) * cols,
                                            gamma_beta, 0, cols, lane, eps);
    norm.each([&](uint32_t c, const T *y) { copy_vec<T, N>(o + c, y); });
}

#define EMBED_LAYER_NORM(NAME, T, N) extern "C" __global__ void NAME(const T *word, const uint32_t *ids, \
    const T *table, T *out, uint32_t rows, uint32_t seq, uint32_t vocab, uint32_t positions, uint32_t cols, \
    float eps) { embed_layer_norm<T, N>(word, ids, table, out, rows, seq, vocab, positions, cols, eps); }
EACH_DTYPE(EMBED_LAYER_NORM, embed_layer_norm)

#define MASKED_SOFTMAX(NAME, T, N) extern "C" __global__ void NAME(const T *x, const float *mask, T *out, \
    uint32_t rows, uint32_t cols, uint32_t rows_per_batch) { masked_softmax<T, N>(x, mask, out, rows, cols, rows_per_batch); }

MASKED_SOFTMAX(masked_softmax_f32, float, 1)
MASKED_SOFTMAX(masked_softmax_f16, __half, 1)
MASKED_SOFTMAX(masked_softmax_bf16, __nv_bfloat16, 1)
MASKED_SOFTMAX(masked_softmax_vec_f32, float, 4)
MASKED_SOFTMAX(masked_softmax_vec_f16, __half, 4)
MASKED_SOFTMAX(masked_softmax_vec_bf16, __nv_bfloat16, 4)

// The one-kernel attention and its variants.
#include "attention.cuh"
