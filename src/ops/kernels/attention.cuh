// The encoders' one-kernel attention and its variants (src/ops/attention.rs, attention_packed.rs,
// attention_codes.rs), included by fused.cu into the runner_fused module.
#pragma once
#include "common.cuh"
#include <cooperative_groups.h>

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
// The static codes epilogue (PACK 3: int8, 4: E4M3; device.attention_activation_scales = "static",
// src/ops/attention_codes.rs): attention-out's input as codes with one calibrated step per column,
// folded into attention-out's weights, so no row needs the other heads' values: each value is
// rounded to T (as the plain context is), times 1 / step of its column, rounded to a code (int8:
// half away from zero, clamp +-127; E4M3: clamp +-448, nearest even), as FFN-in's static codes
// epilogue does (src/ops/kernels/cutlass/gemm_codes.cuh). The row scales are 1, or NaN where any
// head's context of the row has a NaN (a code cannot hold one): they start at 0 (a memset before
// the launch), head 0 ORs in 1.0's bits and a head with a NaN a quiet NaN's (0x3f800000 |
// 0x7fc00000 is the NaN), so no head waits for another.
// int8's code of a: roundf(a) clamped to +-127 (half away from zero; NaN -127, as fmaxf(NaN, -127)
// gives), without roundf's FRND and the int cast's F2I, both quarter-rate conversions: |a| (at most
// 127) + 0.5 and its floor, both added rounding down (exact: rounding down never crosses the integer
// below), the floor read off the bits of 1.5 x 2^23 + floor.
__device__ __forceinline__ int code_i8(float a) {
    const float m = fminf(fabsf(a), 127.0f);
    const int q = __float_as_int(__fadd_rd(__fadd_rd(m, 0.5f), 12582912.0f)) - 0x4B400000;
    return a >= 0.0f ? q : -q;
}

// a and b rounded to T (as the plain context is stored) and back, two at a time: one packing
// conversion for the pair instead of one for each.
template <typename T> __device__ __forceinline__ void round_pair(float &a, float &b);
template <> __device__ __forceinline__ void round_pair<__half>(float &a, float &b) {
    const float2 r = __half22float2(__floats2half2_rn(a, b));
    a = r.x, b = r.y;
}
template <> __device__ __forceinline__ void round_pair<__nv_bfloat16>(float &a, float &b) {
    const float2 r = __bfloat1622float2(__floats2bfloat162_rn(a, b));
    a = r.x, b = r.y;
}

template <typename T, int D, int PACK>
__device__ __forceinline__ void store_static(const float (&o)[D / 8][4], float inv_lo, float inv_hi,
                                             const T *vb, const float *inv_step, uint8_t *q,
                                             unsigned *scale_bits, size_t row, bool lo_ok,
                                             bool hi_ok, size_t width, uint32_t h, uint32_t tig) {
    uint8_t *lo = q + row * width + h * D, *hi = lo + 8 * width;
    const float *is = inv_step + h * D;
    int nan_lo = 0, nan_hi = 0;
    auto code2 = [](float a, float b) -> uint16_t {
        if constexpr (PACK == 3) {
            return (uint16_t)((code_i8(a) & 0xff) | ((code_i8(b) & 0xff) << 8));
        } else {
            const float ca = fminf(fmaxf(a, -448.0f), 448.0f), cb = fminf(fmaxf(b, -448.0f), 448.0f);
            return (uint16_t)__nv_cvt_float2_to_fp8x2(make_float2(ca, cb), __NV_SATFINITE, __NV_E4M3);
        }
    };
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        const int c = n * 8 + tig * 2;
        const float b0 = to_f32(vb[c]), b1 = to_f32(vb[c + 1]);
        const float s0 = is[c], s1 = is[c + 1];
        float v0 = fmaf(o[n][0], inv_lo, b0), v1 = fmaf(o[n][1], inv_lo, b1);
        float v2 = fmaf(o[n][2], inv_hi, b0), v3 = fmaf(o[n][3], inv_hi, b1);
        round_pair<T>(v0, v1);
        round_pair<T>(v2, v3);
        nan_lo |= isnan(v0) | isnan(v1);
        nan_hi |= isnan(v2) | isnan(v3);
        if (lo_ok) *reinterpret_cast<uint16_t *>(lo + c) = code2(v0 * s0, v1 * s1);
        if (hi_ok) *reinterpret_cast<uint16_t *>(hi + c) = code2(v2 * s0, v3 * s1);
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        nan_lo |= __shfl_xor_sync(0xffffffff, nan_lo, off);
        nan_hi |= __shfl_xor_sync(0xffffffff, nan_hi, off);
    }
    if (tig == 0) {
        if (lo_ok && (h == 0 || nan_lo)) atomicOr(scale_bits + row, nan_lo ? 0x7fc00000u : 0x3f800000u);
        if (hi_ok && (h == 0 || nan_hi)) atomicOr(scale_bits + row + 8, nan_hi ? 0x7fc00000u : 0x3f800000u);
    }
}

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
                          float *qscale, uint32_t seq, uint32_t heads,
                          const float *inv_step = nullptr) {
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
    if constexpr (PACK >= 3) {
        store_static<T, D, PACK>(o, inv_lo, inv_hi, vb, inv_step, q, reinterpret_cast<unsigned *>(qscale),
                                 row0 + q0 + g, q0 + g < seq, q0 + g + 8 < seq, width, h, tig);
        return;
    } else if constexpr (PACK != 0) {
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
// Four blocks an SM (at most 128 registers a thread) where the plain kernel's 138 allow three:
// the kernel waits on memory, and a third more warps hide more of it. ptxas: 128 registers, 4
// bytes spilled at D = 64 (none at 32).
#define ATTENTION_SKIP(NAME, T, D) extern "C" __global__ void __launch_bounds__(128, 4) NAME(const T *x, const T *bias, \
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

// The static codes attention (src/ops/attention_codes.rs): attention-out's 8-bit input with calibrated
// per-column steps (store_static), no cluster; with the padding's key chunks skipped or computed.
// Four blocks an SM, as ATTENTION_SKIP (ptxas: 128 registers; 4 bytes spilled with SKIP at D = 64).
#define ATTENTION_CODES(NAME, T, D, PACK, SKIP) extern "C" __global__ void __launch_bounds__(128, 4) NAME( \
    const T *x, const T *bias, const float *mask, const float *inv_step, uint8_t *q, float *qscale, \
    uint32_t seq, uint32_t heads) { attention<T, D, PACK, SKIP>(x, bias, mask, nullptr, q, qscale, seq, heads, inv_step); }

ATTENTION_CODES(attention_codes_d64_i8_f16, __half, 64, 3, false)
ATTENTION_CODES(attention_codes_d64_i8_bf16, __nv_bfloat16, 64, 3, false)
ATTENTION_CODES(attention_codes_d32_i8_f16, __half, 32, 3, false)
ATTENTION_CODES(attention_codes_d32_i8_bf16, __nv_bfloat16, 32, 3, false)
ATTENTION_CODES(attention_codes_d64_e4m3_f16, __half, 64, 4, false)
ATTENTION_CODES(attention_codes_d64_e4m3_bf16, __nv_bfloat16, 64, 4, false)
ATTENTION_CODES(attention_codes_d32_e4m3_f16, __half, 32, 4, false)
ATTENTION_CODES(attention_codes_d32_e4m3_bf16, __nv_bfloat16, 32, 4, false)
ATTENTION_CODES(attention_codes_skip_d64_i8_f16, __half, 64, 3, true)
ATTENTION_CODES(attention_codes_skip_d64_i8_bf16, __nv_bfloat16, 64, 3, true)
ATTENTION_CODES(attention_codes_skip_d32_i8_f16, __half, 32, 3, true)
ATTENTION_CODES(attention_codes_skip_d32_i8_bf16, __nv_bfloat16, 32, 3, true)
ATTENTION_CODES(attention_codes_skip_d64_e4m3_f16, __half, 64, 4, true)
ATTENTION_CODES(attention_codes_skip_d64_e4m3_bf16, __nv_bfloat16, 64, 4, true)
ATTENTION_CODES(attention_codes_skip_d32_e4m3_f16, __half, 32, 4, true)
ATTENTION_CODES(attention_codes_skip_d32_e4m3_bf16, __nv_bfloat16, 32, 4, true)
