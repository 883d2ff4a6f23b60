// The one-launch decode attention (decode_attention_fused) and its variant with the rotary
// embedding and the KV write folded in (decode_attention_rope, decode_kernels = "gemv-fold"),
// included by decode.cu (which defines round_t and rounded).
#pragma once
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

// decode_attention_rope's inputs beyond the attention's: the Q|K|V GEMV's output row (B, (H + 2K) D),
// its bias (qwen2; null elsewhere), the per-head norms (qwen3; null elsewhere), the rotary tables
// (positions, D / 2). Null qkv: the plain attention (Q given rotated).
template <typename T> struct RopeIn {
    const T *qkv, *bias, *q_norm, *k_norm, *cos, *sin;
    float eps;
};

// The 8 values sub * 8 .. of the head at column `col` of a Q|K|V row as rope_kv_write
// computes them: bias added and rounded to T, with `norm` RMS-normed over the head's D values (the
// head's TPK lanes, xor shuffles within the lane group) and rounded, then with `rotate` rotated
// with the partner half (lane sub ^ TPK / 2 holds the values D / 2 away) and rounded. Every lane of
// the warp calls it (full-mask shuffles).
template <typename T, int D>
__device__ __forceinline__ void rope8(const RopeIn<T> &r, const T *row, uint32_t col, const T *norm, bool rotate,
                                      uint32_t pos, uint32_t sub, float (&f)[8]) {
    constexpr int TPK = D / 8;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const float v = to_f32(row[col + sub * 8 + e]);
        f[e] = r.bias ? rounded<T>(v + to_f32(r.bias[col + sub * 8 + e])) : v;
    }
    if (norm) {
        float sq = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) sq += f[e] * f[e];
#pragma unroll
        for (int off = TPK / 2; off > 0; off >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, off);
        const float rs = rsqrtf(sq / D + r.eps);
#pragma unroll
        for (int e = 0; e < 8; ++e) f[e] = rounded<T>(f[e] * rs * to_f32(norm[sub * 8 + e]));
    }
    if (!rotate) return;
    constexpr uint32_t HALF = D / 2, PART = TPK / 2;
    const bool lo = sub < PART;
    const uint32_t i0 = (sub % PART) * 8;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const float p = __shfl_xor_sync(0xffffffff, f[e], PART);
        const float c = to_f32(r.cos[(size_t)pos * HALF + i0 + e]), s = to_f32(r.sin[(size_t)pos * HALF + i0 + e]);
        f[e] = lo ? rounded<T>(f[e] * c - p * s) : rounded<T>(p * s + f[e] * c);
    }
}

// part: (B, H, splits, 2 + D) f32 (m, l, o of each split); counters: (B K) u32, zero between
// launches; out: (B, H D) in T. Grid (splits, B K), FA_WARPS warps. wide: the last CTA's merge
// loads every split's partial of a value before using any (gemv-bulk; 0 elsewhere).
template <typename T, int D, int GM, bool ROPE = false>
__device__ void decode_attention_fused(const T *__restrict__ q, const T *__restrict__ keys,
                                       const T *__restrict__ values, const uint32_t *position, float *part,
                                       uint32_t *counters, T *out, uint32_t heads, uint32_t kv_heads,
                                       uint32_t capacity, float scale, uint32_t wide, RopeIn<T> rp = {}) {
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
    // ROPE: the position is the step's (written by no kernel of the step), read before the wait.
    const uint32_t pos = *position;
    const uint32_t len = min(pos + 1, capacity), per = (len + splits - 1) / splits;
    const uint32_t start = min(len, split * per), end = min(len, start + per);
    const size_t head0 = (size_t)b * heads + (size_t)kh * groups;  // the group's first query head
    const T *kb = keys + (size_t)bk * capacity * D + sub * 8, *vb = values + (size_t)bk * capacity * D + sub * 8;
    // Uniform trip count for the whole CTA: every lane reaches every shuffle.
    const uint32_t rounds = (end - start + NG * U - 1) / (NG * U);
    float kf[U][8], vf[U][8];
    bool valid[U];
    // Round r's keys and values from the cache; ROPE: not the position's own, which this step's
    // Q|K|V GEMV computes (taken from registers below).
    auto load_round = [&](uint32_t r) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const uint32_t j = start + r * NG * U + u * NG + kg;
            valid[u] = j < end;
            if (valid[u] && !(ROPE && j == pos)) {
                load8(kb + (size_t)j * D, kf[u]);
                load8(vb + (size_t)j * D, vf[u]);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) kf[u][e] = vf[u][e] = 0.0f;
            }
        }
    };
    float qr[GM][8], m[GM], l[GM], o[GM][8], knew[8], vnew[8];
    if constexpr (ROPE) {
        // The cache's first round does not depend on the Q|K|V GEMV: in flight before the wait.
        if (rounds > 0) load_round(0);
        pdl_wait();
        pdl_trigger();
        const uint32_t width = (heads + 2 * kv_heads) * D;
        const T *row = rp.qkv + (size_t)b * width;
#pragma unroll
        for (int g = 0; g < GM; ++g) {
            if (g < (int)groups) {
                rope8<T, D>(rp, row, (kh * groups + g) * D, rp.q_norm, true, pos, sub, qr[g]);
#pragma unroll
                for (int e = 0; e < 8; ++e) qr[g][e] *= scale;
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) qr[g][e] = 0.0f;
            }
        }
        rope8<T, D>(rp, row, (heads + kh) * D, rp.k_norm, true, pos, sub, knew);
        rope8<T, D>(rp, row, (heads + kv_heads + kh) * D, nullptr, false, pos, sub, vnew);
    }
#pragma unroll
    for (int g = 0; g < GM; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            o[g][e] = 0.0f;
            if constexpr (!ROPE) qr[g][e] = g < (int)groups ? to_f32(q[(head0 + g) * D + sub * 8 + e]) * scale : 0.0f;
        }
    }
    for (uint32_t r = 0; r < rounds; ++r) {
        if (!ROPE || r > 0) load_round(r);
        if constexpr (ROPE) {
            // The position's key and value: used from registers, written to the cache for the
            // steps after this one (by the one lane group that holds them).
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const uint32_t j = start + r * NG * U + u * NG + kg;
                if (valid[u] && j == pos) {
                    T *kw = const_cast<T *>(kb) + (size_t)j * D, *vw = const_cast<T *>(vb) + (size_t)j * D;
#pragma unroll
                    for (int e = 0; e < 8; ++e) {
                        kf[u][e] = knew[e];
                        vf[u][e] = vnew[e];
                        kw[e] = round_t<T>(knew[e]);
                        vw[e] = round_t<T>(vnew[e]);
                    }
                }
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

