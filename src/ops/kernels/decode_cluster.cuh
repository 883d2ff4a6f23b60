// decode_attention_cluster (decode_kernels = "gemv-cluster", session 9): decode_attention_rope's work
// (rotary + KV write folded in, the first cache loads before griddepcontrol.wait) with its splits
// merged through distributed shared memory inside one thread-block cluster, instead of partials
// written to global memory, a fence, an atomic ticket and the last CTA's L2 reads. Included by
// decode.cu after decode_attention.cuh (load8, merge_factors, RopeIn, rope8).
//
//   - grid (FC_SPLITS, B K), cluster (FC_SPLITS, 1, 1): the FC_SPLITS CTAs of one (sequence, KV
//     head) are one cluster, each a contiguous share of the device-held length;
//   - FC_WARPS warps a CTA (twice decode_attention_fused's), so at Llama's d 64 a CTA's one round
//     of loads covers 128 keys: one round at L <= 1024 for 8 splits;
//   - the cos/sin of the position are loaded before the wait too (they do not depend on the GEMV),
//     and the Q|K|V row is read 16 bytes at a time (the launcher checks alignment);
//   - each CTA merges its warps into its own (m, l, o) in shared memory; one cluster barrier; CTA r
//     then merges output values [r * G D / S, (r + 1) * G D / S) of the group over the S CTAs'
//     states (read through DSMEM, rank order) and writes them; one more cluster barrier so no CTA
//     leaves while its shared memory is read.
//
// Bytes and FLOPs are decode_attention_fused's (Llama-3.2-1B b1, L 576: 1.18 MB of K/V, 4.7 MFLOP;
// ~0.28 us at 4.27 TB/s). What goes from its chain: the partials' global write (B H S (2 + d) f32),
// __threadfence, the atomic ticket, the second fence, the last CTA's partial (m, l) loads, its serial
// per-query-head loop over the splits' factors and its ceil(S / 8) dependent L2 rounds of partial
// values; what comes: two cluster barriers and one round of DSMEM loads.
#pragma once
#include <cooperative_groups.h>

#define FC_WARPS 8
#define FC_SPLITS 8

// rope8 with the position's cos/sin already in registers (c, s: the lane's 8 values of the pair
// index (sub % (TPK / 2)) * 8) and the row's 8 values loaded as one 16-byte load (two in f32):
// the same expressions, so the same roundings.
template <typename T, int D>
__device__ __forceinline__ void rope8_loaded(const RopeIn<T> &r, const T *row, uint32_t col, const T *norm,
                                             bool rotate, uint32_t sub, const float (&c)[8], const float (&s)[8],
                                             float (&f)[8]) {
    constexpr int TPK = D / 8;
    load8(row + col + sub * 8, f);
    if (r.bias) {
        float bv[8];
        load8(r.bias + col + sub * 8, bv);
#pragma unroll
        for (int e = 0; e < 8; ++e) f[e] = rounded<T>(f[e] + bv[e]);
    }
    if (norm) {
        float sq = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) sq += f[e] * f[e];
#pragma unroll
        for (int off = TPK / 2; off > 0; off >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, off);
        const float rs = rsqrtf(sq / D + r.eps);
        float nv[8];
        load8(norm + sub * 8, nv);
#pragma unroll
        for (int e = 0; e < 8; ++e) f[e] = rounded<T>(f[e] * rs * nv[e]);
    }
    if (!rotate) return;
    constexpr uint32_t PART = TPK / 2;
    const bool lo = sub < PART;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const float p = __shfl_xor_sync(0xffffffff, f[e], PART);
        f[e] = lo ? rounded<T>(f[e] * c[e] - p * s[e]) : rounded<T>(p * s[e] + f[e] * c[e]);
    }
}

// out: (B, H D) in T. Grid (FC_SPLITS, B K), cluster (FC_SPLITS, 1, 1), FC_WARPS warps.
template <typename T, int D, int GM>
__device__ void decode_attention_cluster(T *keys, T *values, const uint32_t *position, T *out, uint32_t heads,
                                         uint32_t kv_heads, uint32_t capacity, float scale, RopeIn<T> rp) {
    namespace cg = cooperative_groups;
    constexpr int TPK = D / 8;          // lanes a key
    constexpr int KPW = 32 / TPK;       // keys a warp at once
    constexpr int NG = FC_WARPS * KPW;  // lane groups a CTA
    constexpr int U = GM <= 4 ? 4 : 2;  // keys in flight a lane group
    constexpr uint32_t HALF = D / 2, PART = TPK / 2;
    __shared__ float wm[FC_WARPS][GM], wl[FC_WARPS][GM], wo[FC_WARPS][GM][D];
    __shared__ float cm[GM], cl[GM], co[GM][D];  // this CTA's merged state, read by the cluster
    cg::cluster_group cluster = cg::this_cluster();
    const uint32_t split = cluster.block_rank(), splits = FC_SPLITS, bk = blockIdx.y;
    const uint32_t b = bk / kv_heads, kh = bk % kv_heads, groups = heads / kv_heads;
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const uint32_t sub = lane % TPK, kg = warp * KPW + lane / TPK;
    // The position is the step's (written by no kernel of the step): read before the wait.
    const uint32_t pos = *position;
    const uint32_t len = min(pos + 1, capacity), per = (len + splits - 1) / splits;
    const uint32_t start = min(len, split * per), end = min(len, start + per);
    const size_t head0 = (size_t)b * heads + (size_t)kh * groups;  // the group's first query head
    T *kb = keys + (size_t)bk * capacity * D + sub * 8, *vb = values + (size_t)bk * capacity * D + sub * 8;
    const uint32_t rounds = (end - start + NG * U - 1) / (NG * U);  // uniform over the CTA
    float kf[U][8], vf[U][8];
    bool valid[U];
    // Round r's keys and values from the cache, but the position's own (computed by this step's
    // Q|K|V GEMV, taken from registers below).
    auto load_round = [&](uint32_t r) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const uint32_t j = start + r * NG * U + u * NG + kg;
            valid[u] = j < end;
            if (valid[u] && j != pos) {
                load8(kb + (size_t)j * D, kf[u]);
                load8(vb + (size_t)j * D, vf[u]);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) kf[u][e] = vf[u][e] = 0.0f;
            }
        }
    };
    // Before the wait: the first round of the cache and the position's rotary pair.
    if (rounds > 0) load_round(0);
    float cs[8], sn[8];
    {
        const uint32_t i0 = (sub % PART) * 8;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            cs[e] = to_f32(rp.cos[(size_t)pos * HALF + i0 + e]);
            sn[e] = to_f32(rp.sin[(size_t)pos * HALF + i0 + e]);
        }
    }
    pdl_wait();
    pdl_trigger();
    float qr[GM][8], m[GM], l[GM], o[GM][8], knew[8], vnew[8];
    {
        const uint32_t width = (heads + 2 * kv_heads) * D;
        const T *row = rp.qkv + (size_t)b * width;
#pragma unroll
        for (int g = 0; g < GM; ++g) {
            if (g < (int)groups) {
                rope8_loaded<T, D>(rp, row, (kh * groups + g) * D, rp.q_norm, true, sub, cs, sn, qr[g]);
#pragma unroll
                for (int e = 0; e < 8; ++e) qr[g][e] *= scale;
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) qr[g][e] = 0.0f;
            }
        }
        rope8_loaded<T, D>(rp, row, (heads + kh) * D, rp.k_norm, true, sub, cs, sn, knew);
        rope8_loaded<T, D>(rp, row, (heads + kv_heads + kh) * D, nullptr, false, sub, cs, sn, vnew);
    }
#pragma unroll
    for (int g = 0; g < GM; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) o[g][e] = 0.0f;
    }
    for (uint32_t r = 0; r < rounds; ++r) {
        if (r > 0) load_round(r);
        // The position's key and value: used from registers, written to the cache for the steps
        // after this one (by the one lane group that holds them).
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const uint32_t j = start + r * NG * U + u * NG + kg;
            if (valid[u] && j == pos) {
                T *kw = kb + (size_t)j * D, *vw = vb + (size_t)j * D;
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    kf[u][e] = knew[e];
                    vf[u][e] = vnew[e];
                    kw[e] = round_t<T>(knew[e]);
                    vw[e] = round_t<T>(vnew[e]);
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
    // Merge the warps into this CTA's state: thread (g, c) of the group's G x D values.
    for (uint32_t i = tid; i < groups * D; i += blockDim.x) {
        const uint32_t g = i / D, c = i % D;
        float mm = wm[0][g], ll = wl[0][g], oo = wo[0][g][c];
#pragma unroll
        for (int w = 1; w < FC_WARPS; ++w) {
            float nm, f1, f2;
            merge_factors(mm, wm[w][g], nm, f1, f2);
            ll = ll * f1 + wl[w][g] * f2;
            oo = oo * f1 + wo[w][g][c] * f2;
            mm = nm;
        }
        co[g][c] = oo;
        if (c == 0) {
            cm[g] = mm;
            cl[g] = ll;
        }
    }
    // Every CTA's state written (release) and visible to the cluster (acquire).
    cluster.sync();
    // CTA `split` merges its share of the group's values over the cluster's states, in rank order.
    const uint32_t total = groups * D, share = (total + splits - 1) / splits;
    const uint32_t i = split * share + tid;
    if (tid < share && i < total) {
        const uint32_t g = i / D, c = i % D;
        float rm[FC_SPLITS], rl[FC_SPLITS], ro[FC_SPLITS];
#pragma unroll
        for (int s = 0; s < FC_SPLITS; ++s) {
            rm[s] = *cluster.map_shared_rank(&cm[g], s);
            rl[s] = *cluster.map_shared_rank(&cl[g], s);
            ro[s] = *cluster.map_shared_rank(&co[g][c], s);
        }
        float mm = rm[0], ll = rl[0], oo = ro[0];
#pragma unroll
        for (int s = 1; s < FC_SPLITS; ++s) {
            float nm, f1, f2;
            merge_factors(mm, rm[s], nm, f1, f2);
            ll = ll * f1 + rl[s] * f2;
            oo = oo * f1 + ro[s] * f2;
            mm = nm;
        }
        out[(head0 + g) * D + c] = round_t<T>(oo * (1.0f / ll));
    }
    // No CTA leaves while another reads its shared memory.
    cluster.sync();
}
