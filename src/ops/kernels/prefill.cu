// The prefill's causal attention (issue 30, `prefill_attention = "flash"`), launched by
// src/ops/prefill.rs: flash-style, one CTA per (64-query tile, sequence, query head), the keys
// and values read in place from the static KV cache (batch, kv_heads, capacity, head_dim) of the
// query head's KV head (grouped-query heads without repeating the cache: the G query heads of a
// KV head read the same rows, which L2 serves), QK^T and PV on the tensor cores (WMMA 16x16x16,
// bf16/f16 in, f32 accumulation), the online softmax in f32 (each lane pair holding one query
// row's max and sum), key tiles past the tile's last query skipped (causal). The context is
// written as (batch, len, heads * head_dim): the output projection's input, no head merge.
//
// Per CTA of 4 warps (16 query rows a warp), 64 keys a tile, head_dim D in {16, 32, 64, 128}:
// shared memory holds the Q tile, the K and V tiles (rows padded by 8 elements against bank
// conflicts), and per warp its scores S (f32), probabilities P (T) and running output O (f32).
#include "common.cuh"
#include <mma.h>

using namespace nvcuda;

#define PF_BM 64
#define PF_BN 64
#define PF_WARPS 4

template <int D> struct PrefillSmem {
    static constexpr int LDK = D + 8;       // Q, K, V rows (T)
    static constexpr int LDS = PF_BN + 4;   // S rows (f32)
    static constexpr int LDP = PF_BN + 8;   // P rows (T)
    static constexpr int LDO = D + 4;       // O rows (f32)
};

// Shared bytes of a CTA (the launcher computes the same: prefill.rs's `shared_bytes`).
template <typename T, int D> constexpr int prefill_shared_bytes() {
    using S = PrefillSmem<D>;
    return (PF_BM + 2 * PF_BN) * S::LDK * (int)sizeof(T) + PF_WARPS * 16 * S::LDS * 4 +
           PF_WARPS * 16 * S::LDP * (int)sizeof(T) + PF_WARPS * 16 * S::LDO * 4;
}

// `rows` rows of D values from `src` (row stride D) into `dst` (row stride LDK), zeros past
// `valid` rows; 16-byte copies (the launcher checks the alignment).
template <typename T, int D>
__device__ __forceinline__ void stage_rows(T *dst, const T *src, int rows, int valid) {
    constexpr int VEC = 16 / sizeof(T);
    constexpr int CHUNKS = D / VEC;
    for (int i = threadIdx.x; i < rows * CHUNKS; i += PF_WARPS * 32) {
        const int r = i / CHUNKS, c = (i % CHUNKS) * VEC;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (r < valid) v = *reinterpret_cast<const uint4 *>(src + (size_t)r * D + c);
        *reinterpret_cast<uint4 *>(dst + r * PrefillSmem<D>::LDK + c) = v;
    }
}

// q: (batch, heads, len, D), the queries of positions start..start+len (rotated); keys, values:
// the cache (batch, kv_heads, capacity, D), positions 0..start+len already written; out:
// (batch, len, heads * D). Query i sees keys 0..=start+i.
template <typename T, int D>
__device__ void prefill_attention(const T *__restrict__ q, const T *__restrict__ keys,
                                  const T *__restrict__ values, T *__restrict__ out, uint32_t len,
                                  uint32_t start, uint32_t heads, uint32_t kv_heads, uint32_t capacity,
                                  float scale) {
    using S = PrefillSmem<D>;
    extern __shared__ __align__(128) unsigned char smem[];
    T *Qs = reinterpret_cast<T *>(smem);
    T *Ks = Qs + PF_BM * S::LDK;
    T *Vs = Ks + PF_BN * S::LDK;
    float *Ss = reinterpret_cast<float *>(Vs + PF_BN * S::LDK);
    T *Ps = reinterpret_cast<T *>(Ss + PF_WARPS * 16 * S::LDS);
    float *Os = reinterpret_cast<float *>(Ps + PF_WARPS * 16 * S::LDP);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t bh = blockIdx.y;
    const uint32_t b = bh / heads, h = bh % heads;
    const uint32_t kvh = h / (heads / kv_heads);
    const uint32_t q0 = blockIdx.x * PF_BM;
    const uint32_t total = start + len;
    const T *kh = keys + ((size_t)b * kv_heads + kvh) * capacity * D;
    const T *vh = values + ((size_t)b * kv_heads + kvh) * capacity * D;

    stage_rows<T, D>(Qs, q + ((size_t)bh * len + q0) * D, PF_BM, (int)min((uint32_t)PF_BM, len - q0));
    float *Sw = Ss + warp * 16 * S::LDS;
    T *Pw = Ps + warp * 16 * S::LDP;
    float *Ow = Os + warp * 16 * S::LDO;
    for (int i = lane; i < 16 * D; i += 32) Ow[(i / D) * S::LDO + i % D] = 0.0f;
    __syncthreads();

    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[D / 16];
#pragma unroll
    for (int k = 0; k < D / 16; ++k) wmma::load_matrix_sync(qf[k], Qs + warp * 16 * S::LDK + k * 16, S::LDK);

    // This lane's query row (a lane pair shares one: each half of its columns).
    const int r = lane / 2, half = lane & 1;
    const uint32_t row = q0 + warp * 16 + r;
    const bool valid = row < len;
    const uint32_t qpos = start + row;
    // The warp's last query position: key tiles past it hold nothing its rows see.
    const uint32_t warp_last = start + q0 + warp * 16 + 15;
    float m = -INFINITY, l = 0.0f;

    const uint32_t kend = min(total, start + q0 + PF_BM);
    for (uint32_t n0 = 0; n0 < kend; n0 += PF_BN) {
        __syncthreads();  // every warp is done with the previous tile's K and V
        const int keys_here = (int)min((uint32_t)PF_BN, total - n0);
        stage_rows<T, D>(Ks, kh + (size_t)n0 * D, PF_BN, keys_here);
        stage_rows<T, D>(Vs, vh + (size_t)n0 * D, PF_BN, keys_here);
        __syncthreads();
        if (n0 > warp_last) continue;

        // S = Q K^T of this warp's 16 rows against the tile's 64 keys.
#pragma unroll
        for (int j = 0; j < PF_BN / 16; ++j) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int k = 0; k < D / 16; ++k) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, Ks + j * 16 * S::LDK + k * 16, S::LDK);
                wmma::mma_sync(acc, qf[k], kf, acc);
            }
            wmma::store_matrix_sync(Sw + j * 16, acc, S::LDS, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax of row r over this lane's 32 columns, the pair combining through a shuffle.
        float *srow = Sw + r * S::LDS + half * (PF_BN / 2);
        float mx = -INFINITY;
#pragma unroll 8
        for (int c = 0; c < PF_BN / 2; ++c) {
            const uint32_t key = n0 + half * (PF_BN / 2) + c;
            // Masked by position, not by arithmetic: a NaN past the causal edge stays out.
            const float s = (valid && key <= qpos && key < total) ? srow[c] * scale : -INFINITY;
            srow[c] = s;
            mx = fmaxf(mx, s);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_new = fmaxf(m, mx);
        const float alpha = m_new == -INFINITY ? 1.0f : __expf(m - m_new);
        T *prow = Pw + r * S::LDP + half * (PF_BN / 2);
        float sum = 0.0f;
#pragma unroll 8
        for (int c = 0; c < PF_BN / 2; ++c) {
            const float s = srow[c];
            const float p = s == -INFINITY ? 0.0f : __expf(s - m_new);
            prow[c] = from_f32<T>(p);
            sum += p;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * alpha + sum;
        m = m_new;
        float *orow = Ow + r * S::LDO + half * (D / 2);
#pragma unroll
        for (int c = 0; c < D / 2; ++c) orow[c] *= alpha;
        __syncwarp();

        // O += P V.
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf[PF_BN / 16];
#pragma unroll
        for (int k = 0; k < PF_BN / 16; ++k) wmma::load_matrix_sync(pf[k], Pw + k * 16, S::LDP);
#pragma unroll
        for (int j = 0; j < D / 16; ++j) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Ow + j * 16, S::LDO, wmma::mem_row_major);
#pragma unroll
            for (int k = 0; k < PF_BN / 16; ++k) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
                wmma::load_matrix_sync(vf, Vs + k * 16 * S::LDK + j * 16, S::LDK);
                wmma::mma_sync(acc, pf[k], vf, acc);
            }
            wmma::store_matrix_sync(Ow + j * 16, acc, S::LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }

    if (!valid) return;
    const float inv = 1.0f / l;
    const float *orow = Ow + r * S::LDO + half * (D / 2);
    T *dst = out + (((size_t)b * len + row) * heads + h) * D + half * (D / 2);
#pragma unroll
    for (int c = 0; c < D / 2; ++c) dst[c] = from_f32<T>(orow[c] * inv);
}

#define PREFILL_ATTENTION(SUFFIX, T, D)                                                                            \
    extern "C" __global__ void __launch_bounds__(PF_WARPS * 32) prefill_attention_d##D##_##SUFFIX(                \
        const T *q, const T *keys, const T *values, T *out, uint32_t len, uint32_t start, uint32_t heads,         \
        uint32_t kv_heads, uint32_t capacity, float scale) {                                                       \
        prefill_attention<T, D>(q, keys, values, out, len, start, heads, kv_heads, capacity, scale);              \
    }
#define PREFILL_ATTENTION_ALL(SUFFIX, T)                                                                           \
    PREFILL_ATTENTION(SUFFIX, T, 16)                                                                               \
    PREFILL_ATTENTION(SUFFIX, T, 32)                                                                               \
    PREFILL_ATTENTION(SUFFIX, T, 64)                                                                               \
    PREFILL_ATTENTION(SUFFIX, T, 128)
PREFILL_ATTENTION_ALL(f16, __half)
PREFILL_ATTENTION_ALL(bf16, __nv_bfloat16)

// For the launcher's check that its shared size is the kernel's.
static_assert(prefill_shared_bytes<__half, 64>() == (64 + 128) * 72 * 2 + 4 * 16 * 68 * 4 + 4 * 16 * 72 * 2 + 4 * 16 * 68 * 4,
              "shared layout");
