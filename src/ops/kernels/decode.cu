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

// The decode attention rewritten for latency (decode_attention_fused, one launch a layer): the
// two-pass kernels above cost 17 us a layer on the H100 against a floor under 0.4 us
// (docs/results/2026-12-06-nvidia-h100-llm-deployed/NOTES.md) because each thread walked its key
// with one dependent scalar load per value and the reduce was a second launch with scratch
// allocated per call. Here:
//   - one CTA (4 warps) per (split, sequence, KV head) serves the G query heads of the group, so a
//     K or V load feeds G dot products;
//   - (D 16, 32 for the tiny test configs, 64, 128 for the models) a key is read by D / 8 lanes, 8 values each (one 16-byte load in f16/bf16, two in f32), the
//     dot product finished with log2(D / 8) xor shuffles; a warp holds 32 / (D / 8) keys, and each
//     lane group issues U keys' K and V loads before using any (16 groups x U keys in flight a CTA);
//   - online softmax (running max, sum and context slice) in registers, merged across the warp's
//     groups by shuffles, across warps in shared memory;
//   - the splits divide the device-held length evenly (a graph replays the same launch at every
//     position), their count picked by the launcher from batch x KV heads and the SM count (about
//     2 CTAs a SM); the last CTA of a (sequence, KV head) to finish, seen through an atomic counter
//     in a preallocated buffer, merges the splits' partial (m, l, o) and resets the counter; with
//     one split the CTA writes the context directly.
//
// Floor (per layer and step; bf16; L = position + 1 keys; the KV bytes dominate):
//   bytes  2 B K L d 2 (K and V) + 2 B H d 2 (Q in, context out)
//   FLOPs  4 B H L d (Q.K and P.V) + ~B H L exps
//   SmolLM2-135M (H 9, K 3, d 64), L 576: B 1 0.44 MB, 1.3 MFLOP -> 0.15 us at 3.04 TB/s;
//                                          B 8 3.5 MB, 10.6 MFLOP -> 1.2 us
//   Llama-3.2-1B (H 32, K 8, d 64), L 576: B 1 1.18 MB, 4.7 MFLOP -> 0.39 us;
//                                          B 8 9.4 MB, 37.7 MFLOP -> 3.1 us
// (L 512-640 scales these by 0.89-1.11.) At B 1 no shape can reach its floor: the kernel is a
// chain of latencies: its graph node (~1.5 us), Q and K/V loads from HBM (~1 us each round, one
// round at B 1), shuffles and the shared-memory merge (~0.3 us), the partials' write, fence and
// atomic (~0.5-1 us), the last CTA's L2 reads of the partials (~0.5-1 us).
// Prediction, written before any GPU run: 4-6 us a layer at B 1 for both shapes (against 16.8 and
// 17.2 us two-pass), 5-8 us at B 8 (against 19.1 and 28.3 us).
#define FA_WARPS 4
// Most splits the launcher picks (the merge keeps one factor per split and query head in shared memory).
#define FA_MAX_SPLITS 64
// Splits' partials a thread of the wide merge loads at once.
#define FA_WIDE 32

// 8 consecutive values as f32 (the launcher checks 16-byte alignment of the cache rows).
template <typename T> __device__ __forceinline__ void load8(const T *__restrict__ p, float (&f)[8]) {
    if constexpr (sizeof(T) == 4) {
        const float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
        const uint4 r = *reinterpret_cast<const uint4 *>(p);
        const T *h = reinterpret_cast<const T *>(&r);
#pragma unroll
        for (int k = 0; k < 8; ++k) f[k] = to_f32(h[k]);
    }
}

// (m, l) of a softmax state merged with another: the common base and both factors. A base of
// -inf (nothing seen yet on either side) becomes 0 so no -inf - -inf NaN appears; a NaN score
// stays in l and o (it reaches the sequence's output, as in the plain path).
__device__ __forceinline__ void merge_factors(float m1, float m2, float &m, float &f1, float &f2) {
    m = fmaxf(m1, m2);
    const float base = m == -INFINITY ? 0.0f : m;
    f1 = expf(m1 - base);
    f2 = expf(m2 - base);
}

// part: (B, H, splits, 2 + D) f32 (m, l, o of each split); counters: (B K) u32, zero between
// launches; out: (B, H D) in T. Grid (splits, B K), FA_WARPS warps. wide: the last CTA's merge
// loads every split's partial of a value before using any (gemv-bulk; 0 elsewhere).
template <typename T, int D, int GM>
__device__ void decode_attention_fused(const T *__restrict__ q, const T *__restrict__ keys,
                                       const T *__restrict__ values, const uint32_t *position, float *part,
                                       uint32_t *counters, T *out, uint32_t heads, uint32_t kv_heads,
                                       uint32_t capacity, float scale, uint32_t wide) {
    constexpr int TPK = D / 8;                   // lanes a key
    constexpr int KPW = 32 / TPK;                // keys a warp at once
    constexpr int NG = FA_WARPS * KPW;           // lane groups a CTA
    constexpr int U = GM <= 4 ? 4 : 2;           // keys in flight a lane group
    __shared__ float wm[FA_WARPS][GM], wl[FA_WARPS][GM], wo[FA_WARPS][GM][D];
    __shared__ float factor[GM][FA_MAX_SPLITS], lsum[GM][FA_MAX_SPLITS];
    __shared__ float inv_l[GM];
    __shared__ bool last;
    const uint32_t split = blockIdx.x, splits = gridDim.x, bk = blockIdx.y;
    const uint32_t b = bk / kv_heads, kh = bk % kv_heads, groups = heads / kv_heads;
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const uint32_t sub = lane % TPK, kg = warp * KPW + lane / TPK;
    const uint32_t len = min(*position + 1, capacity), per = (len + splits - 1) / splits;
    const uint32_t start = min(len, split * per), end = min(len, start + per);
    const size_t head0 = (size_t)b * heads + (size_t)kh * groups;  // the group's first query head

    float qr[GM][8], m[GM], l[GM], o[GM][8];
#pragma unroll
    for (int g = 0; g < GM; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            o[g][e] = 0.0f;
            qr[g][e] = g < (int)groups ? to_f32(q[(head0 + g) * D + sub * 8 + e]) * scale : 0.0f;
        }
    }
    const T *kb = keys + (size_t)bk * capacity * D + sub * 8, *vb = values + (size_t)bk * capacity * D + sub * 8;
    // Uniform trip count for the whole CTA: every lane reaches every shuffle.
    const uint32_t rounds = (end - start + NG * U - 1) / (NG * U);
    for (uint32_t r = 0; r < rounds; ++r) {
        float kf[U][8], vf[U][8];
        bool valid[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const uint32_t j = start + r * NG * U + u * NG + kg;
            valid[u] = j < end;
            if (valid[u]) {
                load8(kb + (size_t)j * D, kf[u]);
                load8(vb + (size_t)j * D, vf[u]);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) kf[u][e] = vf[u][e] = 0.0f;
            }
        }
#pragma unroll
        for (int g = 0; g < GM; ++g) {
            if (g >= (int)groups) break;
            float s[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                float acc = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; ++e) acc = fmaf(qr[g][e], kf[u][e], acc);
#pragma unroll
                for (int off = TPK / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, off);
                s[u] = acc;
            }
            float mx = m[g];
            bool any = false;
#pragma unroll
            for (int u = 0; u < U; ++u)
                if (valid[u]) {
                    mx = fmaxf(mx, s[u]);
                    any = true;
                }
            if (!any) continue;
            const float base = mx == -INFINITY ? 0.0f : mx;
            const float corr = expf(m[g] - base);
            l[g] *= corr;
#pragma unroll
            for (int e = 0; e < 8; ++e) o[g][e] *= corr;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const float p = valid[u] ? expf(s[u] - base) : 0.0f;
                l[g] += p;
#pragma unroll
                for (int e = 0; e < 8; ++e) o[g][e] = fmaf(p, vf[u][e], o[g][e]);
            }
            m[g] = mx;
        }
    }
    // Merge the warp's KPW lane groups (lanes sub, sub + TPK, ... hold the same slice).
#pragma unroll
    for (int g = 0; g < GM; ++g) {
        if (g >= (int)groups) break;
#pragma unroll
        for (int off = TPK; off < 32; off <<= 1) {
            const float m2 = __shfl_xor_sync(0xffffffff, m[g], off), l2 = __shfl_xor_sync(0xffffffff, l[g], off);
            float mm, f1, f2;
            merge_factors(m[g], m2, mm, f1, f2);
            l[g] = l[g] * f1 + l2 * f2;
#pragma unroll
            for (int e = 0; e < 8; ++e) o[g][e] = o[g][e] * f1 + __shfl_xor_sync(0xffffffff, o[g][e], off) * f2;
            m[g] = mm;
        }
        if (lane < TPK) {
#pragma unroll
            for (int e = 0; e < 8; ++e) wo[warp][g][sub * 8 + e] = o[g][e];
            if (lane == 0) {
                wm[warp][g] = m[g];
                wl[warp][g] = l[g];
            }
        }
    }
    __syncthreads();
    // Merge the warps: thread (g, c) of the group's G x D values.
    const bool direct = splits == 1;
    for (uint32_t i = tid; i < groups * D; i += blockDim.x) {
        const uint32_t g = i / D, c = i % D;
        float mm = wm[0][g], ll = wl[0][g], oo = wo[0][g][c];
#pragma unroll
        for (int w = 1; w < FA_WARPS; ++w) {
            float nm, f1, f2;
            merge_factors(mm, wm[w][g], nm, f1, f2);
            ll = ll * f1 + wl[w][g] * f2;
            oo = oo * f1 + wo[w][g][c] * f2;
            mm = nm;
        }
        if (direct) {
            out[(head0 + g) * D + c] = round_t<T>(oo * (1.0f / ll));
        } else {
            float *p = part + ((head0 + g) * splits + split) * (2 + D);
            p[2 + c] = oo;
            if (c == 0) {
                p[0] = mm;
                p[1] = ll;
            }
        }
    }
    if (direct) return;
    // The last CTA of this (sequence, KV head) merges every split (CUDA's threadFenceReduction).
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(&counters[bk], 1u) == splits - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    // Every split's (m, l) into shared memory at once (independent L2 reads, one a thread), then
    // per query head the common max, each split's factor and 1 / l.
    for (uint32_t i = tid; i < groups * splits; i += blockDim.x) {
        const uint32_t g = i / splits, s = i % splits;
        const float *p = part + ((head0 + g) * splits + s) * (2 + D);
        factor[g][s] = __ldcg(p);
        lsum[g][s] = __ldcg(p + 1);
    }
    __syncthreads();
    for (uint32_t g = tid; g < groups; g += blockDim.x) {
        float mm = -INFINITY;
        for (uint32_t s = 0; s < splits; ++s) mm = fmaxf(mm, factor[g][s]);
        const float base = mm == -INFINITY ? 0.0f : mm;
        float ll = 0.0f;
        for (uint32_t s = 0; s < splits; ++s) {
            const float f = expf(factor[g][s] - base);
            factor[g][s] = f;
            ll = fmaf(lsum[g][s], f, ll);
        }
        inv_l[g] = 1.0f / ll;
    }
    __syncthreads();
    if (wide) {
        // gemv-bulk's merge: each thread's values of every split loaded before any is used (up to
        // FA_WIDE at once: one L2 round trip where `#pragma unroll 8` below waits for
        // ceil(splits / 8) of them, twice at Llama b1's 4 x 64 values over 128 threads); the
        // same sums in the same order, so the same context to the bit.
        for (uint32_t i = tid; i < groups * D; i += blockDim.x) {
            const uint32_t g = i / D, c = i % D;
            const float *p = part + (head0 + g) * splits * (2 + D) + 2 + c;
            float oo = 0.0f;
            for (uint32_t s0 = 0; s0 < splits; s0 += FA_WIDE) {
                float v[FA_WIDE];
#pragma unroll
                for (int j = 0; j < FA_WIDE; ++j) v[j] = s0 + j < splits ? __ldcg(p + (s0 + j) * (2 + D)) : 0.0f;
#pragma unroll
                for (int j = 0; j < FA_WIDE; ++j)
                    if (s0 + j < splits) oo = fmaf(v[j], factor[g][s0 + j], oo);
            }
            out[(head0 + g) * D + c] = round_t<T>(oo * inv_l[g]);
        }
    } else {
        for (uint32_t i = tid; i < groups * D; i += blockDim.x) {
            const uint32_t g = i / D, c = i % D;
            const float *p = part + (head0 + g) * splits * (2 + D) + 2 + c;
            float oo = 0.0f;
#pragma unroll 8
            for (uint32_t s = 0; s < splits; ++s) oo = fmaf(__ldcg(p + s * (2 + D)), factor[g][s], oo);
            out[(head0 + g) * D + c] = round_t<T>(oo * inv_l[g]);
        }
    }
    if (tid == 0) counters[bk] = 0;  // ready for the next launch (the next graph replay)
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
#define FUSED_ATTENTION_ALL(SUFFIX, T)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 16, 4)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 16, 8)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 32, 4)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 32, 8)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 64, 4)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 64, 8)                                                                              \
    FUSED_ATTENTION(SUFFIX, T, 128, 4)                                                                             \
    FUSED_ATTENTION(SUFFIX, T, 128, 8)
FUSED_ATTENTION_ALL(f32, float)
FUSED_ATTENTION_ALL(f16, __half)
FUSED_ATTENTION_ALL(bf16, __nv_bfloat16)
