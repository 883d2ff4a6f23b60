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

// attention: softmax(Q K^T + mask) V for one (batch, head, 64-query tile) per block, reading Q, K
// and V straight from the fused QKV GEMM's output x (batch * seq, 3 * heads * D) plus its bias (Q's
// weights and bias come pre-scaled by 1/sqrt(D)), writing the context merged, (batch * seq,
// heads * D): no head split, no score tensor in memory, no head merge. FlashAttention-2's scheme:
// four warps of 16 query rows; keys and values in chunks of 64 copied raw into shared memory by
// cp.async, two stages deep, and read back with ldmatrix (.trans for V: no transposing store);
// Q K^T and P V as mma.sync m16n8k16 on tensor cores with f32 accumulation; scores, the online
// softmax (running max and sum per row, f32) and the context stay in registers, the scores'
// accumulator layout reused as P's operand layout. P is rounded to the storage type for P V, as
// the unfused path rounds its probabilities; the context is divided by the row sum and rounded
// once at the end. A fully masked row (mask at f32's lowest) comes out as the mean of V, as the
// unfused softmax's uniform row does.
namespace attn {
constexpr int WARPS = 4, ROWS = 16 * WARPS, CHUNK = 64, PAD = 8;

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

// D (16x8, f32) += A (16x16, row) * B (16x8, col), A and B in T.
template <typename T>
__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma16816<__half>(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<__nv_bfloat16>(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two consecutive values of x plus bias, packed.
template <typename T> __device__ __forceinline__ uint32_t load2(const T *x, const T *bias) {
    return pack2<T>(to_f32(x[0]) + to_f32(bias[0]), to_f32(x[1]) + to_f32(bias[1]));
}
// cp.async of 16 bytes, zero-filled when !valid (src-size 0 reads nothing).
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
    const uint32_t dst = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, const void *smem) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, const void *smem) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
} // namespace attn

// The packed attention's epilogue: the context rows quantized per token for attention-out's 8-bit
// GEMM (PACK 1: int8, 2: E4M3), bytes and row scales as src/ops/eight_bit's Packed8 lays them out,
// identical to the plain kernel's f16/bf16 output read back by quantize_rows_{i8,e4m3}: each value
// is rounded to T first, the row's scale is max |value| over all heads times 1/127 (1/448), codes
// by the same expressions. A row spans every head's block; the blocks of one query tile's heads
// form a thread-block cluster (__cluster_dims__ on the kernel), each puts its rows' partial maxima
// in its shared memory, and after a cluster barrier each reads the others' (distributed shared
// memory): the context never goes to memory in T, and no second pass reads it back.
namespace cg = cooperative_groups;
template <typename T, int D, int PACK>
__device__ __forceinline__ void store_packed(const float (&o)[D / 8][4], float inv_lo, float inv_hi,
                                             const T *vb, uint8_t *q, float *qscale, size_t row,
                                             bool lo_ok, bool hi_ok, size_t width, uint32_t h,
                                             uint32_t warp, uint32_t g, uint32_t tig) {
    __shared__ float rmax[attn::ROWS];
    float v[D / 8][4];
    float m_lo = 0.0f, m_hi = 0.0f;
    int nan_lo = 0, nan_hi = 0;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        const int c = n * 8 + tig * 2;
        const float b0 = to_f32(vb[c]), b1 = to_f32(vb[c + 1]);
        v[n][0] = to_f32(from_f32<T>(fmaf(o[n][0], inv_lo, b0)));
        v[n][1] = to_f32(from_f32<T>(fmaf(o[n][1], inv_lo, b1)));
        v[n][2] = to_f32(from_f32<T>(fmaf(o[n][2], inv_hi, b0)));
        v[n][3] = to_f32(from_f32<T>(fmaf(o[n][3], inv_hi, b1)));
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            nan_lo |= isnan(v[n][i]);
            nan_hi |= isnan(v[n][2 + i]);
            m_lo = fmaxf(m_lo, fabsf(v[n][i]));
            m_hi = fmaxf(m_hi, fabsf(v[n][2 + i]));
        }
    }
    // The four lanes of a row group hold its D values.
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        m_lo = fmaxf(m_lo, __shfl_xor_sync(0xffffffff, m_lo, off));
        m_hi = fmaxf(m_hi, __shfl_xor_sync(0xffffffff, m_hi, off));
        nan_lo |= __shfl_xor_sync(0xffffffff, nan_lo, off);
        nan_hi |= __shfl_xor_sync(0xffffffff, nan_hi, off);
    }
    // A NaN is kept as NaN (fmaxf would drop it): it makes the row's scale NaN, as in the pass.
    if (tig == 0) {
        rmax[warp * 16 + g] = !lo_ok ? 0.0f : nan_lo ? NAN : m_lo;
        rmax[warp * 16 + g + 8] = !hi_ok ? 0.0f : nan_hi ? NAN : m_hi;
    }
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
    float mx_lo = 0.0f, mx_hi = 0.0f;
    bool any_nan_lo = false, any_nan_hi = false;
    for (uint32_t r = 0; r < cluster.num_blocks(); ++r) {
        const float *remote = cluster.map_shared_rank(rmax, r);
        const float a = remote[warp * 16 + g], b = remote[warp * 16 + g + 8];
        any_nan_lo |= isnan(a);
        any_nan_hi |= isnan(b);
        mx_lo = fmaxf(mx_lo, a);
        mx_hi = fmaxf(mx_hi, b);
    }
    // No block leaves (its shared memory with it) while another still reads it.
    cluster.sync();
    const float unit = PACK == 1 ? (float)(1.0 / 127.0) : (float)(1.0 / 448.0);
    const float s_lo = any_nan_lo ? NAN : (mx_lo == 0.0f ? 1.0f : mx_lo * unit);
    const float s_hi = any_nan_hi ? NAN : (mx_hi == 0.0f ? 1.0f : mx_hi * unit);
    const float i_lo = 1.0f / s_lo, i_hi = 1.0f / s_hi;
    auto code2 = [](float a, float b, float inv) -> uint16_t {
        if constexpr (PACK == 1) {
            const int8_t qa = (int8_t)fminf(fmaxf(roundf(a * inv), -127.0f), 127.0f);
            const int8_t qb = (int8_t)fminf(fmaxf(roundf(b * inv), -127.0f), 127.0f);
            return (uint16_t)(uint8_t)qa | ((uint16_t)(uint8_t)qb << 8);
        } else {
            const float ca = fminf(fmaxf(a * inv, -448.0f), 448.0f), cb = fminf(fmaxf(b * inv, -448.0f), 448.0f);
            return (uint16_t)__nv_cvt_float2_to_fp8x2(make_float2(ca, cb), __NV_SATFINITE, __NV_E4M3);
        }
    };
    uint8_t *lo = q + row * width + h * D, *hi = lo + 8 * width;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        const int c = n * 8 + tig * 2;
        if (lo_ok) *reinterpret_cast<uint16_t *>(lo + c) = code2(v[n][0], v[n][1], i_lo);
        if (hi_ok) *reinterpret_cast<uint16_t *>(hi + c) = code2(v[n][2], v[n][3], i_hi);
    }
    if (h == 0 && tig == 0) {
        if (lo_ok) qscale[row] = s_lo;
        if (hi_ok) qscale[row + 8] = s_hi;
    }
}

// SKIP (device.attention_padding = "skip"): key chunks past the sequence's last key whose mask is
// above f32's lowest are not loaded or multiplied. Such a key's probability is exp(s + lowest - m)
// = 0 in f32 once any key is unmasked, and a chunk of them leaves the running max, the sum and the
// context unchanged (rescale by exp(0) = 1, add 0 x V): the same bits as the full loop wherever
// the padding's V is finite. A row with no unmasked key runs every chunk (the mean of V, as
// before). The key range comes from the mask in the kernel, so a CUDA graph replays it for each
// new batch's lengths.
template <typename T, int D, int PACK, bool SKIP = false>
__device__ void attention(const T *x, const T *bias, const float *mask, T *out, uint8_t *q,
                          float *qscale, uint32_t seq, uint32_t heads) {
    using namespace attn;
    // Two stages of keys and values, row-major as the GEMM wrote them: chunk c + 1 is copied in
    // (cp.async) while chunk c is multiplied. 36 KiB for D = 64.
    __shared__ alignas(16) T ks[2][CHUNK][D + PAD];
    __shared__ alignas(16) T vs[2][CHUNK][D + PAD];
    const uint32_t h = blockIdx.y, b = blockIdx.z;
    const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t g = lane / 4, tig = lane % 4;  // mma fragment coordinates
    const size_t width = (size_t)heads * D, stride = 3 * width;
    const size_t row0 = (size_t)b * seq;
    const uint32_t q0 = blockIdx.x * ROWS + warp * 16;
    const float *mrow = mask + (size_t)b * seq;
    // K's bias is not added: it adds q . b_k to every score of a query row, and a softmax does not
    // change under a per-row constant. V's bias is added to the context at the end, exactly,
    // because each row of P sums to one. So K and V are copied raw, 16 bytes at a time.
    const T *qb = bias + h * D, *vb = bias + 2 * width + h * D;

    auto load_chunk = [&](int buf, uint32_t k0) {
        for (int e = threadIdx.x; e < CHUNK * D / 8; e += 32 * WARPS) {
            const int j = e / (D / 8), c = (e % (D / 8)) * 8;
            const bool ok = k0 + j < seq;  // keys past the sequence are zero-filled
            const T *src = x + (row0 + (ok ? k0 + j : 0)) * stride + h * D + c;
            cp_async16(&ks[buf][j][c], src + width, ok);
            cp_async16(&vs[buf][j][c], src + 2 * width, ok);
        }
        cp_async_commit();
    };
    uint32_t keys = seq;
    if constexpr (SKIP) {
        // 1 + the last key not at f32's lowest (a NaN mask counts as unmasked), over the block.
        __shared__ int last_of[WARPS];
        int last = -1;
        for (uint32_t j = threadIdx.x; j < seq; j += 32 * WARPS)
            if (!(mrow[j] <= -3.40282347e+38f)) last = (int)j;
        last = __reduce_max_sync(0xffffffff, last);
        if (lane == 0) last_of[warp] = last;
        __syncthreads();
#pragma unroll
        for (int w = 0; w < WARPS; ++w) last = max(last, last_of[w]);
        if (last >= 0) keys = (uint32_t)last + 1;
    }
    const uint32_t chunks = (keys + CHUNK - 1) / CHUNK;
    load_chunk(0, 0);

    // This warp's Q (16 x D) as A fragments, bias added; rows past the sequence are zero.
    uint32_t qf[D / 16][4];
    {
        const bool lo_ok = q0 + g < seq, hi_ok = q0 + g + 8 < seq;
        const T *lo = x + (row0 + q0 + g) * stride + h * D, *hi = lo + 8 * stride;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            const int c = kk * 16 + tig * 2;
            qf[kk][0] = lo_ok ? load2(lo + c, qb + c) : 0u;
            qf[kk][1] = hi_ok ? load2(hi + c, qb + c) : 0u;
            qf[kk][2] = lo_ok ? load2(lo + c + 8, qb + c + 8) : 0u;
            qf[kk][3] = hi_ok ? load2(hi + c + 8, qb + c + 8) : 0u;
        }
    }
    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    // Running max and (this thread's partial) sum of rows g and g + 8.
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
    // ldmatrix: lane l supplies the address of row l % 8 of the 8x8 matrix l / 8.
    const uint32_t lm_row = lane % 8, lm_mat = lane / 8;

    for (uint32_t chunk = 0; chunk < chunks; ++chunk) {
        const int buf = chunk & 1;
        const uint32_t k0 = chunk * CHUNK;
        if (chunk + 1 < chunks) {
            load_chunk(buf ^ 1, k0 + CHUNK);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        // S = Q K^T: 16 rows x 64 keys as eight 16x8 tiles. One ldmatrix.x4 gives the B fragments
        // of one key tile for two 16-wide slices of D (matrices: d + 0, 8, 16, 24).
        float s[CHUNK / 8][4];
#pragma unroll
        for (int j = 0; j < CHUNK / 8; ++j) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk += 2) {
                uint32_t kf[4];
                ldmatrix_x4(kf, &ks[buf][j * 8 + lm_row][kk * 16 + lm_mat * 8]);
                mma16816<T>(s[j], qf[kk], kf[0], kf[1]);
                mma16816<T>(s[j], qf[kk + 1], kf[2], kf[3]);
            }
        }
        // Mask, then the online softmax of rows g (c0, c1) and g + 8 (c2, c3).
        float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
        for (int j = 0; j < CHUNK / 8; ++j) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const uint32_t key = k0 + j * 8 + tig * 2 + i;
                const float add = key < seq ? mrow[key] : -INFINITY;
                s[j][i] = key < seq ? s[j][i] + add : -INFINITY;
                s[j][2 + i] = key < seq ? s[j][2 + i] + add : -INFINITY;
                mx_lo = fmaxf(mx_lo, s[j][i]);
                mx_hi = fmaxf(mx_hi, s[j][2 + i]);
            }
        }
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffff, mx_lo, off));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffff, mx_hi, off));
        }
        const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
        const float a_lo = expf(m_lo - mn_lo), a_hi = expf(m_hi - mn_hi);
        m_lo = mn_lo;
        m_hi = mn_hi;
        float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
        for (int j = 0; j < CHUNK / 8; ++j) {
            s[j][0] = expf(s[j][0] - mn_lo);
            s[j][1] = expf(s[j][1] - mn_lo);
            s[j][2] = expf(s[j][2] - mn_hi);
            s[j][3] = expf(s[j][3] - mn_hi);
            sum_lo += s[j][0] + s[j][1];
            sum_hi += s[j][2] + s[j][3];
        }
        l_lo = l_lo * a_lo + sum_lo;
        l_hi = l_hi * a_hi + sum_hi;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            o[n][0] *= a_lo;
            o[n][1] *= a_lo;
            o[n][2] *= a_hi;
            o[n][3] *= a_hi;
        }
        // O += P V: P's A fragments are the score tiles 2kk and 2kk + 1, rounded to T. V's B
        // fragments by ldmatrix.trans from row-major V (matrices: keys + 0, 8 of d-tiles n, n + 1).
#pragma unroll
        for (int kk = 0; kk < CHUNK / 16; ++kk) {
            const uint32_t pf[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                    pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int n = 0; n < D / 8; n += 2) {
                uint32_t vf[4];
                ldmatrix_x4_trans(vf, &vs[buf][kk * 16 + (lm_mat & 1) * 8 + lm_row][(n + (lm_mat >> 1)) * 8]);
                mma16816<T>(o[n], pf, vf[0], vf[1]);
                mma16816<T>(o[n + 1], pf, vf[2], vf[3]);
            }
        }
        __syncthreads();  // every warp is done with this stage before it is refilled
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        l_lo += __shfl_xor_sync(0xffffffff, l_lo, off);
        l_hi += __shfl_xor_sync(0xffffffff, l_hi, off);
    }
    // The context divided by the row sums, plus V's bias, merged: (batch * seq, heads * D).
    const float inv_lo = 1.0f / l_lo, inv_hi = 1.0f / l_hi;
    if constexpr (PACK != 0) {
        store_packed<T, D, PACK>(o, inv_lo, inv_hi, vb, q, qscale, row0 + q0 + g, q0 + g < seq,
                                 q0 + g + 8 < seq, width, h, warp, g, tig);
        return;
    }
    T *lo = out + (row0 + q0 + g) * width + h * D, *hi = lo + 8 * width;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        const int c = n * 8 + tig * 2;
        const float b0 = to_f32(vb[c]), b1 = to_f32(vb[c + 1]);
        if (q0 + g < seq)
            *reinterpret_cast<uint32_t *>(lo + c) =
                pack2<T>(fmaf(o[n][0], inv_lo, b0), fmaf(o[n][1], inv_lo, b1));
        if (q0 + g + 8 < seq)
            *reinterpret_cast<uint32_t *>(hi + c) =
                pack2<T>(fmaf(o[n][2], inv_hi, b0), fmaf(o[n][3], inv_hi, b1));
    }
}

#define ATTENTION(NAME, T, D) extern "C" __global__ void __launch_bounds__(128) NAME(const T *x, const T *bias, \
    const float *mask, T *out, uint32_t seq, uint32_t heads) { attention<T, D, 0>(x, bias, mask, out, nullptr, nullptr, seq, heads); }

ATTENTION(attention_d64_f16, __half, 64)
ATTENTION(attention_d64_bf16, __nv_bfloat16, 64)
ATTENTION(attention_d32_f16, __half, 32)
ATTENTION(attention_d32_bf16, __nv_bfloat16, 32)

// The same with the padding's key chunks skipped (SKIP above; src/ops/attention.rs, set_padding).
#define ATTENTION_SKIP(NAME, T, D) extern "C" __global__ void __launch_bounds__(128) NAME(const T *x, const T *bias, \
    const float *mask, T *out, uint32_t seq, uint32_t heads) { attention<T, D, 0, true>(x, bias, mask, out, nullptr, nullptr, seq, heads); }

ATTENTION_SKIP(attention_skip_d64_f16, __half, 64)
ATTENTION_SKIP(attention_skip_d64_bf16, __nv_bfloat16, 64)
ATTENTION_SKIP(attention_skip_d32_f16, __half, 32)
ATTENTION_SKIP(attention_skip_d32_bf16, __nv_bfloat16, 32)

// The packed attention (src/ops/attention.rs, attention_packed): 12 heads, one cluster per query
// tile (a non-portable cluster size: the launcher allows it and checks that clusters fit).
#define ATTENTION_PACKED(NAME, T, D, PACK) extern "C" __global__ void __cluster_dims__(1, 12, 1) \
    __launch_bounds__(128) NAME(const T *x, const T *bias, const float *mask, uint8_t *q, float *qscale, \
    uint32_t seq, uint32_t heads) { attention<T, D, PACK>(x, bias, mask, nullptr, q, qscale, seq, heads); }

ATTENTION_PACKED(attention_packed_h12_d64_i8_f16, __half, 64, 1)
ATTENTION_PACKED(attention_packed_h12_d64_i8_bf16, __nv_bfloat16, 64, 1)
ATTENTION_PACKED(attention_packed_h12_d32_i8_f16, __half, 32, 1)
ATTENTION_PACKED(attention_packed_h12_d32_i8_bf16, __nv_bfloat16, 32, 1)
ATTENTION_PACKED(attention_packed_h12_d64_e4m3_f16, __half, 64, 2)
ATTENTION_PACKED(attention_packed_h12_d64_e4m3_bf16, __nv_bfloat16, 64, 2)
ATTENTION_PACKED(attention_packed_h12_d32_e4m3_f16, __half, 32, 2)
ATTENTION_PACKED(attention_packed_h12_d32_e4m3_bf16, __nv_bfloat16, 32, 2)
