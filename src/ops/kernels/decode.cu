// The decode step's fused kernels (issue 30), launched by src/ops/decode.rs: a Llama-family layer's
// one-token step as a handful of launches instead of ~93 candle kernels. Every value is computed in
// f32 and rounded to T where the plain path stores a T (the residual sum, the normed row, the
// rotated Q and K, the SwiGLU product, the attention context), so the two paths differ by the
// order of f32 sums and the plain path's own intermediate roundings (candle's rope and silu
// round after each operation in f16/bf16), not by what is stored.
//
// Floors, per layer and step, batch B, hidden h, heads H, KV heads K, head_dim d, context L, T of
// s bytes (the numbers for SmolLM2-135M: h 576, H 9, K 3, d 64, L 640, bf16):
//   add_rms_norm   reads 2Bh + h, writes 2Bh values: 3.5 KB at B = 1: launch-bound (~2 us).
//   rope_kv_write  reads B(H + 2K)d + 2 L-independent table rows, writes B(H + 2K)d: 1.9 KB.
//   attention      reads 2BKLd values (the cache up to the position) = 491 KB at B 1: 0.16 us at
//                  3 TB/s, FLOPs 4BHLd = 1.5 MFLOP: launch-bound; split over 64-key chunks so a
//                  long context still fills the GPU (FlashDecoding), then one reduce over splits.
//   swiglu         reads 2BI, writes BI values (I = 1536: 9 KB).
// So every kernel here is bound by its launch, not by bytes: the step's time is nodes x per-node
// cost + the GEMMs' weight reads (docs/results/*-llm-deployed/NOTES.md has the measured profile).
#include "common.cuh"

template <typename T> __device__ __forceinline__ T round_t(float v) { return from_f32<T>(v); }
template <typename T> __device__ __forceinline__ float rounded(float v) { return to_f32(from_f32<T>(v)); }

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, off));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), broadcast to every thread.
__device__ __forceinline__ float block_sum(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < warps; ++w) t += scratch[w];
    return t;
}

// out (2, rows, cols): out[0] = rms_norm(x + residual) * weight, out[1] = x + residual (the new
// residual stream), both rounded to T; the sum is rounded to T before the norm reads it, as the
// plain path's separate add stores it. One block a row.
template <typename T>
__device__ void add_rms_norm(const T *x, const T *residual, const T *weight, T *out, uint32_t rows, uint32_t cols,
                             float eps) {
    __shared__ float scratch[32];
    const uint32_t row = blockIdx.x;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols, *rr = residual + (size_t)row * cols;
    T *normed = out + (size_t)row * cols, *sum = out + (size_t)rows * cols + (size_t)row * cols;
    float sq = 0.0f;
    for (uint32_t c = threadIdx.x; c < cols; c += blockDim.x) {
        const float s = rounded<T>(to_f32(xr[c]) + to_f32(rr[c]));
        sum[c] = round_t<T>(s);
        sq += s * s;
    }
    const float rstd = rsqrtf(block_sum(sq, scratch) / cols + eps);
    // Each thread reads back only what it wrote itself: no barrier needed.
    for (uint32_t c = threadIdx.x; c < cols; c += blockDim.x)
        normed[c] = round_t<T>(to_f32(sum[c]) * rstd * to_f32(weight[c]));
}

// The fused Q|K|V GEMM's output row (B, (H + 2K) d) -> Q rotated (B, H d), and K rotated and V
// written into the static cache (B, K, capacity, d) at the device-held position, in place. With
// `bias` (qwen2) it is added first and rounded to T, as the plain linear stores it; with q_norm and
// k_norm (qwen3) each head is RMS-normed (f32, rounded to T) before the rotation. One warp a head
// (Q heads, then K heads, each K head writing its V head too); rotate_half pairs (i, i + d/2).
template <typename T>
__device__ void rope_kv_write(const T *qkv, const T *bias, const T *q_norm, const T *k_norm, const T *cos,
                              const T *sin, const uint32_t *position, T *q_out, T *keys, T *values, uint32_t batch,
                              uint32_t heads, uint32_t kv_heads, uint32_t head_dim, uint32_t capacity, float eps) {
    constexpr int MAXP = 4;  // pairs per lane: head_dim <= 256 (the launcher checks)
    const uint32_t warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    const uint32_t per_row = heads + kv_heads;
    if (warp >= batch * per_row) return;
    const uint32_t b = warp / per_row, h = warp % per_row, half = head_dim / 2;
    const uint32_t width = (heads + 2 * kv_heads) * head_dim;
    const T *row = qkv + (size_t)b * width;
    const uint32_t pos = *position;
    const uint32_t off = h * head_dim;  // Q heads then K heads, as the fused weight stacks them
    auto load = [&](uint32_t i) {
        const float v = to_f32(row[i]);
        return bias ? rounded<T>(v + to_f32(bias[i])) : v;
    };
    float x1[MAXP], x2[MAXP];
    float sq = 0.0f;
#pragma unroll
    for (int p = 0; p < MAXP; ++p) {
        const uint32_t i = lane + 32 * p;
        x1[p] = x2[p] = 0.0f;
        if (i < half) {
            x1[p] = load(off + i);
            x2[p] = load(off + i + half);
            sq += x1[p] * x1[p] + x2[p] * x2[p];
        }
    }
    const bool is_q = h < heads;
    const T *norm = is_q ? q_norm : k_norm;
    if (norm) {
        const float r = rsqrtf(warp_sum(sq) / head_dim + eps);
#pragma unroll
        for (int p = 0; p < MAXP; ++p) {
            const uint32_t i = lane + 32 * p;
            if (i < half) {
                x1[p] = rounded<T>(x1[p] * r * to_f32(norm[i]));
                x2[p] = rounded<T>(x2[p] * r * to_f32(norm[i + half]));
            }
        }
    }
    const size_t slot = is_q ? 0 : (((size_t)b * kv_heads + (h - heads)) * capacity + pos) * head_dim;
    T *dst = is_q ? q_out + ((size_t)b * heads + h) * head_dim : keys + slot;
#pragma unroll
    for (int p = 0; p < MAXP; ++p) {
        const uint32_t i = lane + 32 * p;
        if (i < half) {
            const float c = to_f32(cos[(size_t)pos * half + i]), s = to_f32(sin[(size_t)pos * half + i]);
            dst[i] = round_t<T>(x1[p] * c - x2[p] * s);
            dst[i + half] = round_t<T>(x1[p] * s + x2[p] * c);
        }
    }
    if (!is_q) {
        const uint32_t voff = (heads + kv_heads) * head_dim + (h - heads) * head_dim;
        for (uint32_t i = lane; i < head_dim; i += 32) values[slot + i] = round_t<T>(load(voff + i));
    }
}

// Keys per split of the decode attention.
#define CHUNK 64
// Query heads per KV head the kernel holds in registers (the launcher refuses more).
#define MAXG 16

// FlashDecoding, first pass: block (split, b * K + kv_head) takes the keys split * CHUNK ..
// + CHUNK that are at or before the device-held position, for all G = H / K query heads that
// share the KV head (the keys and values are read once for the group), and writes per query head
// and split its running max m, sum l and unnormalized context o (f32) to `part`
// (B, H, splits, 2 + d). Splits past the position write m = -inf, l = 0, o = 0.
// Dynamic shared memory: G d (queries, pre-scaled) + G CHUNK (scores) + slices G d (partial
// contexts) floats, slices = blockDim.x / (d / 2).
template <typename T>
__device__ void decode_attention_split(const T *q, const T *keys, const T *values, const uint32_t *position,
                                       float *part, uint32_t heads, uint32_t kv_heads, uint32_t head_dim,
                                       uint32_t capacity, uint32_t splits, float scale) {
    extern __shared__ float smem[];
    const uint32_t split = blockIdx.x, bk = blockIdx.y, b = bk / kv_heads, kh = bk % kv_heads;
    const uint32_t groups = heads / kv_heads, d = head_dim, tid = threadIdx.x;
    const uint32_t lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    float *qs = smem, *ps = qs + groups * d, *red = ps + groups * CHUNK;
    const uint32_t len = *position + 1, start = split * CHUNK;
    const uint32_t n = start < len ? min((uint32_t)CHUNK, len - start) : 0;
    const T *qg = q + ((size_t)b * heads + (size_t)kh * groups) * d;
    for (uint32_t i = tid; i < groups * d; i += blockDim.x) qs[i] = to_f32(qg[i]) * scale;
    __syncthreads();
    const size_t base = ((size_t)bk * capacity + start) * d;
    if (tid < CHUNK) {
        if (tid < n) {
            float acc[MAXG];
#pragma unroll
            for (int g = 0; g < MAXG; ++g) acc[g] = 0.0f;
            const T *k = keys + base + (size_t)tid * d;
            for (uint32_t c = 0; c < d; ++c) {
                const float kv = to_f32(k[c]);
#pragma unroll
                for (int g = 0; g < MAXG; ++g)
                    if (g < groups) acc[g] = fmaf(kv, qs[g * d + c], acc[g]);
            }
#pragma unroll
            for (int g = 0; g < MAXG; ++g)
                if (g < groups) ps[g * CHUNK + tid] = acc[g];
        } else {
            for (uint32_t g = 0; g < groups; ++g) ps[g * CHUNK + tid] = -INFINITY;
        }
    }
    __syncthreads();
    // Softmax statistics of this chunk, one warp a query head.
    float *stats = red;  // (m, l) per head, before red is used for the contexts
    for (uint32_t g = warp; g < groups; g += warps) {
        float m = -INFINITY;
        for (uint32_t j = lane; j < CHUNK; j += 32) m = fmaxf(m, ps[g * CHUNK + j]);
        m = warp_max(m);
        float l = 0.0f;
        for (uint32_t j = lane; j < CHUNK; j += 32) {
            const float s = ps[g * CHUNK + j];
            const float p = (j < n) ? expf(s - m) : 0.0f;
            ps[g * CHUNK + j] = p;
            l += p;
        }
        l = warp_sum(l);
        if (lane == 0) {
            stats[2 * g] = m;
            stats[2 * g + 1] = l;
        }
    }
    __syncthreads();
    const uint32_t pairs = d / 2, slices = blockDim.x / pairs;
    for (uint32_t g = 0; g < groups; ++g) {
        const size_t at = (((size_t)b * heads + kh * groups + g) * splits + split) * (2 + d);
        if (tid == 0) {
            part[at] = stats[2 * g];
            part[at + 1] = stats[2 * g + 1];
        }
    }
    __syncthreads();  // stats read before red is overwritten
    const uint32_t slice = tid / pairs, pair = tid % pairs;
    if (slice < slices) {
        float acc[MAXG][2];
#pragma unroll
        for (int g = 0; g < MAXG; ++g) acc[g][0] = acc[g][1] = 0.0f;
        for (uint32_t j = slice; j < n; j += slices) {
            const T *v = values + base + (size_t)j * d + 2 * pair;
            const float v0 = to_f32(v[0]), v1 = to_f32(v[1]);
#pragma unroll
            for (int g = 0; g < MAXG; ++g) {
                if (g < groups) {
                    const float p = ps[g * CHUNK + j];
                    acc[g][0] = fmaf(p, v0, acc[g][0]);
                    acc[g][1] = fmaf(p, v1, acc[g][1]);
                }
            }
        }
#pragma unroll
        for (int g = 0; g < MAXG; ++g) {
            if (g < groups) {
                red[(slice * groups + g) * d + 2 * pair] = acc[g][0];
                red[(slice * groups + g) * d + 2 * pair + 1] = acc[g][1];
            }
        }
    }
    __syncthreads();
    for (uint32_t i = tid; i < groups * d; i += blockDim.x) {
        const uint32_t g = i / d, c = i % d;
        float o = 0.0f;
        for (uint32_t s = 0; s < slices; ++s) o += red[(s * groups + g) * d + c];
        part[(((size_t)b * heads + kh * groups + g) * splits + split) * (2 + d) + 2 + c] = o;
    }
}

// Second pass: one block a (batch, query head) merges its splits (rescaled to the largest max)
// into the context row, rounded to T, in the (B, H d) layout the output projection takes. Split 0
// always holds position 0, so the largest max is finite.
template <typename T>
__device__ void decode_attention_reduce(const float *part, T *out, uint32_t rows, uint32_t head_dim,
                                        uint32_t splits) {
    const uint32_t bh = blockIdx.x;
    if (bh >= rows) return;
    const float *p = part + (size_t)bh * splits * (2 + head_dim);
    float m = -INFINITY;
    for (uint32_t s = 0; s < splits; ++s) m = fmaxf(m, p[s * (2 + head_dim)]);
    float l = 0.0f;
    for (uint32_t s = 0; s < splits; ++s) {
        const float ls = p[s * (2 + head_dim) + 1];
        if (ls > 0.0f) l += ls * expf(p[s * (2 + head_dim)] - m);
    }
    const float inv = 1.0f / l;
    for (uint32_t c = threadIdx.x; c < head_dim; c += blockDim.x) {
        float o = 0.0f;
        for (uint32_t s = 0; s < splits; ++s) {
            const float *ps = p + s * (2 + head_dim);
            if (ps[1] > 0.0f) o += ps[2 + c] * expf(ps[0] - m);
        }
        out[(size_t)bh * head_dim + c] = round_t<T>(o * inv);
    }
}

#include "decode_attention.cuh"
#include "decode_cluster.cuh"

// The greedy pick of a decode step (decode_kernels = "gemv-fold"): tokens[row] = the index of the
// largest of logits[row, :vocab] (f32), the lowest index among equal maxima, NaN never picked (an
// all-NaN row gives 0, as candle's argmax). Candle's argmax is one block of 1024 threads a row:
// 91.7 us of Llama-3.2-1B's 1.45 ms step over 128256 logits (session 8's timeline). Here a grid of
// (blocks, rows) each reduces per_block values to a 64-bit key (the value's bits made orderable,
// then ~index: a larger key is a larger value or, equal, a lower index), atomicMax'ed into the
// row's slot; the last block of the row (an arrival counter) writes the token and resets slot and
// counter for the next launch. scratch: (rows, 4) u32, zero before the first launch: the slot
// (u64 at [row * 4]) and the counter ([row * 4 + 2]).
__device__ __forceinline__ unsigned long long argmax_key(float v, uint32_t i) {
    if (v != v) return 0ull;
    const uint32_t b = __float_as_uint(v), o = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((unsigned long long)o << 32) | (0xFFFFFFFFu - i);
}

extern "C" __global__ void argmax_rows_f32(const float *logits, uint32_t *tokens, uint32_t *scratch, uint32_t vocab,
                                           uint32_t per_block) {
    __shared__ unsigned long long warp_best[32];
    __shared__ bool last;
    const uint32_t row = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t from = blockIdx.x * per_block, to = min(vocab, from + per_block);
    const float *l = logits + (size_t)row * vocab;
    unsigned long long best = 0ull;
    for (uint32_t i = from + threadIdx.x; i < to; i += blockDim.x) best = max(best, argmax_key(l[i], i));
    for (int off = 16; off > 0; off >>= 1) best = max(best, __shfl_xor_sync(0xffffffff, best, off));
    if (lane == 0) warp_best[warp] = best;
    __syncthreads();
    unsigned long long *slot = reinterpret_cast<unsigned long long *>(scratch + (size_t)row * 4);
    uint32_t *counter = scratch + (size_t)row * 4 + 2;
    if (threadIdx.x == 0) {
        for (uint32_t w = 1; w < blockDim.x / 32; ++w) best = max(best, warp_best[w]);
        best = max(best, warp_best[0]);
        atomicMax(slot, best);
        __threadfence();
        last = atomicAdd(counter, 1u) == gridDim.x - 1;
        if (last) {
            __threadfence();
            const unsigned long long key = atomicMax(slot, 0ull);
            tokens[row] = key == 0ull ? 0u : 0xFFFFFFFFu - (uint32_t)(key & 0xFFFFFFFFull);
            *slot = 0ull;
            *counter = 0u;
        }
    }
}

// decode_kernels = "gemv-lean" (session 10): the step's tail after the lm_head in one launch,
// where gemv-fold runs candle's cast to f32, its position add and copy, and argmax_rows_f32 (8.0
// + 1.2 + 1.1 + 4.7 us of the H200 step, session 9's timeline). The lm_head's logits (rows,
// vocab) in T are written as f32 into logits_f32 (the step's output; exact: every T is an f32),
// and their pick goes into tokens as argmax_rows_f32 picks (the same keys, scratch and last-block
// protocol; the same token) unless tokens is null (a step outside the fixed loop: the caller
// picks); block (0, 0) writes *pos_in + 1 to pos_out unless it is null (the step's position
// advanced; nothing of the step reads the position after the lm_head). Launched plainly.
template <typename T>
__device__ void logits_pick(const T *logits, float *logits_f32, uint32_t *tokens, uint32_t *scratch,
                            const uint32_t *pos_in, uint32_t *pos_out, uint32_t vocab, uint32_t per_block) {
    __shared__ unsigned long long warp_best[32];
    const uint32_t row = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t from = blockIdx.x * per_block, to = min(vocab, from + per_block);
    const T *l = logits + (size_t)row * vocab;
    float *f = logits_f32 + (size_t)row * vocab;
    unsigned long long best = 0ull;
    for (uint32_t i = from + threadIdx.x; i < to; i += blockDim.x) {
        const float v = to_f32(l[i]);
        f[i] = v;
        best = max(best, argmax_key(v, i));
    }
    if (pos_out != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *pos_out = *pos_in + 1;
    if (tokens == nullptr) return;
    // argmax_rows_f32's merge, unchanged.
    for (int off = 16; off > 0; off >>= 1) best = max(best, __shfl_xor_sync(0xffffffff, best, off));
    if (lane == 0) warp_best[warp] = best;
    __syncthreads();
    unsigned long long *slot = reinterpret_cast<unsigned long long *>(scratch + (size_t)row * 4);
    uint32_t *counter = scratch + (size_t)row * 4 + 2;
    if (threadIdx.x == 0) {
        for (uint32_t w = 1; w < blockDim.x / 32; ++w) best = max(best, warp_best[w]);
        best = max(best, warp_best[0]);
        atomicMax(slot, best);
        __threadfence();
        if (atomicAdd(counter, 1u) == gridDim.x - 1) {
            __threadfence();
            const unsigned long long key = atomicMax(slot, 0ull);
            tokens[row] = key == 0ull ? 0u : 0xFFFFFFFFu - (uint32_t)(key & 0xFFFFFFFFull);
            *slot = 0ull;
            *counter = 0u;
        }
    }
}

// (rows, 2 I) [gate | up] -> (rows, I): silu(gate) rounded to T, times up, rounded to T (the plain
// path's silu, then its multiply).
template <typename T> __device__ void swiglu(const T *gate_up, T *out, uint32_t rows, uint32_t inter) {
    GRID_STRIDE(i, (size_t)rows * inter) {
        const size_t r = i / inter, c = i % inter;
        const float g = to_f32(gate_up[r * 2 * inter + c]), u = to_f32(gate_up[r * 2 * inter + inter + c]);
        const float s = rounded<T>(g / (1.0f + expf(-g)));
        out[i] = round_t<T>(s * u);
    }
}

#define DECODE_KERNELS(SUFFIX, T)                                                                                  \
    extern "C" __global__ void add_rms_norm_##SUFFIX(const T *x, const T *residual, const T *weight, T *out,      \
                                                     uint32_t rows, uint32_t cols, float eps) {                   \
        add_rms_norm<T>(x, residual, weight, out, rows, cols, eps);                                                \
    }                                                                                                              \
    extern "C" __global__ void rope_kv_write_##SUFFIX(                                                             \
        const T *qkv, const T *bias, const T *q_norm, const T *k_norm, const T *cos, const T *sin,                 \
        const uint32_t *position, T *q_out, T *keys, T *values, uint32_t batch, uint32_t heads, uint32_t kv_heads, \
        uint32_t head_dim, uint32_t capacity, float eps) {                                                         \
        pdl_wait();                                                                                                \
        pdl_trigger();                                                                                             \
        rope_kv_write<T>(qkv, bias, q_norm, k_norm, cos, sin, position, q_out, keys, values, batch, heads,         \
                         kv_heads, head_dim, capacity, eps);                                                       \
    }                                                                                                              \
    extern "C" __global__ void decode_attention_split_##SUFFIX(                                                    \
        const T *q, const T *keys, const T *values, const uint32_t *position, float *part, uint32_t heads,         \
        uint32_t kv_heads, uint32_t head_dim, uint32_t capacity, uint32_t splits, float scale) {                   \
        decode_attention_split<T>(q, keys, values, position, part, heads, kv_heads, head_dim, capacity, splits,    \
                                  scale);                                                                          \
    }                                                                                                              \
    extern "C" __global__ void decode_attention_reduce_##SUFFIX(const float *part, T *out, uint32_t rows,          \
                                                                uint32_t head_dim, uint32_t splits) {             \
        decode_attention_reduce<T>(part, out, rows, head_dim, splits);                                             \
    }                                                                                                              \
    extern "C" __global__ void swiglu_##SUFFIX(const T *gate_up, T *out, uint32_t rows, uint32_t inter) {          \
        swiglu<T>(gate_up, out, rows, inter);                                                                      \
    }                                                                                                              \
    extern "C" __global__ void logits_pick_##SUFFIX(const T *logits, float *logits_f32, uint32_t *tokens,           \
                                                    uint32_t *scratch, const uint32_t *pos_in, uint32_t *pos_out,  \
                                                    uint32_t vocab, uint32_t per_block) {                          \
        logits_pick<T>(logits, logits_f32, tokens, scratch, pos_in, pos_out, vocab, per_block);                    \
    }

DECODE_KERNELS(f32, float)
DECODE_KERNELS(f16, __half)
DECODE_KERNELS(bf16, __nv_bfloat16)

#define FUSED_ATTENTION(SUFFIX, T, D, GM)                                                                          \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32) decode_attention_fused_d##D##_g##GM##_##SUFFIX(    \
        const T *q, const T *keys, const T *values, const uint32_t *position, float *part, uint32_t *counters,     \
        T *out, uint32_t heads, uint32_t kv_heads, uint32_t capacity, float scale, uint32_t wide) {                \
        pdl_wait();                                                                                                \
        pdl_trigger();                                                                                             \
        decode_attention_fused<T, D, GM>(q, keys, values, position, part, counters, out, heads, kv_heads,         \
                                         capacity, scale, wide);                                                  \
    }
// decode_kernels = "gemv-fold": the rotary embedding and the KV write folded into the attention
// (decode_attention.cuh's ROPE): it waits on the Q|K|V GEMV itself, after its first round of cache
// loads; no rope_kv_write launch.
#define ROPE_ATTENTION(SUFFIX, T, D, GM)                                                                           \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32) decode_attention_rope_d##D##_g##GM##_##SUFFIX(     \
        const T *qkv, const T *bias, const T *q_norm, const T *k_norm, const T *cos, const T *sin, T *keys,        \
        T *values, const uint32_t *position, float *part, uint32_t *counters, T *out, uint32_t heads,              \
        uint32_t kv_heads, uint32_t capacity, float scale, float eps) {                                            \
        const RopeIn<T> rp{qkv, bias, q_norm, k_norm, cos, sin, eps};                                              \
        decode_attention_fused<T, D, GM, true>(nullptr, keys, values, position, part, counters, out, heads,        \
                                               kv_heads, capacity, scale, 0, rp);                                  \
    }
// decode_kernels = "gemv-cluster" (session 9): decode_attention_rope's work with its splits merged
// through distributed shared memory in one cluster a (sequence, KV head) (decode_cluster.cuh).
#define CLUSTER_ATTENTION(SUFFIX, T, D, GM)                                                                        \
    extern "C" __global__ void __cluster_dims__(FC_SPLITS, 1, 1) __launch_bounds__(FC_WARPS * 32)                  \
        decode_attention_cluster_d##D##_g##GM##_##SUFFIX(const T *qkv, const T *bias, const T *q_norm,             \
                                                         const T *k_norm, const T *cos, const T *sin, T *keys,     \
                                                         T *values, const uint32_t *position, T *out,              \
                                                         uint32_t heads, uint32_t kv_heads, uint32_t capacity,     \
                                                         float scale, float eps) {                                 \
        const RopeIn<T> rp{qkv, bias, q_norm, k_norm, cos, sin, eps};                                              \
        decode_attention_cluster<T, D, GM>(keys, values, position, out, heads, kv_heads, capacity, scale, rp);     \
    }
#define FUSED_ATTENTION_ALL(SUFFIX, T)                                                                              \
    CLUSTER_ATTENTION(SUFFIX, T, 16, 4)                                                                            \
    CLUSTER_ATTENTION(SUFFIX, T, 16, 8)                                                                            \
    CLUSTER_ATTENTION(SUFFIX, T, 32, 4)                                                                            \
    CLUSTER_ATTENTION(SUFFIX, T, 32, 8)                                                                            \
    CLUSTER_ATTENTION(SUFFIX, T, 64, 4)                                                                            \
    CLUSTER_ATTENTION(SUFFIX, T, 64, 8)                                                                            \
    CLUSTER_ATTENTION(SUFFIX, T, 128, 4)                                                                           \
    CLUSTER_ATTENTION(SUFFIX, T, 128, 8)                                                                           \
    FUSED_ATTENTION(SUFFIX, T, 16, 4)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 16, 4)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 16, 8)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 16, 8)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 32, 4)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 32, 4)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 32, 8)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 32, 8)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 64, 4)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 64, 4)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 64, 8)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 64, 8)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 128, 4)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 128, 4)                                                                             \
    FUSED_ATTENTION(SUFFIX, T, 128, 8)                                                                              \
    ROPE_ATTENTION(SUFFIX, T, 128, 8)
FUSED_ATTENTION_ALL(f32, float)
FUSED_ATTENTION_ALL(f16, __half)
FUSED_ATTENTION_ALL(bf16, __nv_bfloat16)
