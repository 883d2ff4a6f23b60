// decode_kernels = "gemv-fold"'s GEMVs (gemv_fold, gemv_split), included by gemv.cu after its
// loads (load16, load16_ro), row_of and rows_a_warp.
#pragma once

// decode_kernels = "gemv-fold": the RMSNorm GEMVs (Q|K|V, gate|up) without their block prologue,
// and gate|up with SwiGLU in its epilogue (the swiglu_rows launch goes).
//   RMS: y = inv_rms . sum_c w_c (x_c g_c): a warp's lanes load every chunk of the input row for
//        its first output row anyway, so the warp sums x^2 from those loads and applies 1/rms to
//        the finished dot products: no block-wide read and reduction of x, no __syncthreads,
//        between griddepcontrol.wait and the first weight used (gemv's prologue, paid by every
//        block before its first row).
//   SWI: W is (2n, k), [gate | up]; a warp computes gate rows j.. and the matching up rows
//        n + j.. and writes act[j] = silu(gate) * up with gate and up rounded to T first (what
//        swiglu_rows reads from the gate|up buffer), so out is (B, n).
// The same loads, unroll and L2 prefetch before the wait as gemv; weight rows a warp RR, output rows OR.
//
// BATCH (decode_kernels = "gemv-lean", session 10; gemv-fold and gemv-cluster run BATCH false): a
// lane's loads batched as gemv_long's (gemv_long.cuh). The loop over chunks below compiles (nvcc
// 13.0, sm_90a) into loads issued ~2 at a time (RR 1) or ~4 (RR 2) between the FMAs; with BATCH a
// lane issues UNROLL = 8 / RR chunks of each of its RR weight rows (8 x 16 bytes in flight), and
// the norm weight's and its inputs' chunks, predicated, into registers before it converts or
// multiplies any. The same chunks in the same order a lane (c = lane, lane + 32, ...), the same
// FMAs in the same order, the same sums and epilogue: the same output bits as BATCH false.
template <typename T, int B, bool RMS, bool SWI, bool BATCH = false>
__device__ void gemv_fold(const T *__restrict__ w, const T *__restrict__ x, const T *__restrict__ norm_w,
                          const T *__restrict__ bias, T *__restrict__ out, uint32_t nb, uint32_t n, uint32_t k,
                          uint32_t ldx, uint32_t residual, float eps) {
    constexpr int N = 16 / sizeof(T);
    constexpr int RB = rows_a_warp(B);
    constexpr int OR = SWI ? (RB / 2 > 0 ? RB / 2 : 1) : RB;  // output rows a warp
    constexpr int RR = SWI ? 2 * OR : OR;                    // weight rows a warp
    constexpr int UNROLL = 8 / RR > 0 ? 8 / RR : 1;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t chunks = k / N;
    // Weight row q of the warp's output rows from row0: gate rows, then (SWI) the up rows.
    auto wrow = [&](uint32_t row0, int q) -> uint32_t {
        const uint32_t o = min(row0 + (uint32_t)(q % OR), n - 1);
        return SWI && q >= OR ? n + o : o;
    };
    {
        const uint32_t first = (blockIdx.x * GV_WARPS + warp) * OR;
        if (first < n) {
#pragma unroll
            for (int q = 0; q < RR; ++q) {
                const T *wr0 = w + (size_t)wrow(first, q) * k;
#pragma unroll
                for (int u = 0; u < UNROLL; ++u) {
                    const uint32_t c = lane + 32u * u;
                    if (c < chunks) prefetch_l2(wr0 + (size_t)c * N);
                }
            }
        }
    }
    pdl_wait();
    pdl_trigger();
    float inv[B];
#pragma unroll
    for (int b = 0; b < B; ++b) inv[b] = 1.0f;
    bool have_inv = !RMS;
    for (uint32_t row0 = (blockIdx.x * GV_WARPS + warp) * OR; row0 < n; row0 += gridDim.x * GV_WARPS * OR) {
        const T *wr[RR];
#pragma unroll
        for (int q = 0; q < RR; ++q) wr[q] = w + (size_t)wrow(row0, q) * k;
        float acc[RR][B], sq[B];
#pragma unroll
        for (int b = 0; b < B; ++b) {
            sq[b] = 0.0f;
#pragma unroll
            for (int q = 0; q < RR; ++q) acc[q][b] = 0.0f;
        }
        if constexpr (BATCH) {
            // UNROLL chunks of each row a round, every load issued before any is used.
            for (uint32_t c0 = lane; c0 < chunks; c0 += 32u * UNROLL) {
                uint4 wraw[RR][UNROLL];
#pragma unroll
                for (int u = 0; u < UNROLL; ++u) {
                    const uint32_t c = c0 + 32u * u;
#pragma unroll
                    for (int q = 0; q < RR; ++q)
                        wraw[q][u] = c < chunks ? __ldg(reinterpret_cast<const uint4 *>(wr[q] + (size_t)c * N))
                                                : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
                for (int u = 0; u < UNROLL; ++u) {
                    const uint32_t c = c0 + 32u * u;
                    if (c >= chunks) break;  // past the row's end: nothing loaded
                    float wv[RR][N], g[N];
#pragma unroll
                    for (int q = 0; q < RR; ++q) {
                        const T *v = reinterpret_cast<const T *>(&wraw[q][u]);
#pragma unroll
                        for (int i = 0; i < N; ++i) wv[q][i] = to_f32(v[i]);
                    }
                    if constexpr (RMS) load16<T, N>(g, norm_w + (size_t)c * N);
#pragma unroll
                    for (int b = 0; b < B; ++b) {
                        float xv[N];
                        load16<T, N>(xv, x + (size_t)row_of(b, nb) * ldx + (size_t)c * N);
                        if constexpr (RMS) {
                            if (!have_inv) {
#pragma unroll
                                for (int i = 0; i < N; ++i) sq[b] = fmaf(xv[i], xv[i], sq[b]);
                            }
#pragma unroll
                            for (int i = 0; i < N; ++i) xv[i] *= g[i];
                        }
#pragma unroll
                        for (int q = 0; q < RR; ++q)
#pragma unroll
                            for (int i = 0; i < N; ++i) acc[q][b] = fmaf(wv[q][i], xv[i], acc[q][b]);
                    }
                }
            }
        } else {
#pragma unroll(UNROLL)
            for (uint32_t c = lane; c < chunks; c += 32) {
                float wv[RR][N];
#pragma unroll
                for (int q = 0; q < RR; ++q) load16_ro<T, N>(wv[q], wr[q] + (size_t)c * N);
                float g[N];
                if constexpr (RMS) load16<T, N>(g, norm_w + (size_t)c * N);
#pragma unroll
                for (int b = 0; b < B; ++b) {
                    float xv[N];
                    load16<T, N>(xv, x + (size_t)row_of(b, nb) * ldx + (size_t)c * N);
                    if constexpr (RMS) {
                        if (!have_inv) {
#pragma unroll
                            for (int i = 0; i < N; ++i) sq[b] = fmaf(xv[i], xv[i], sq[b]);
                        }
#pragma unroll
                        for (int i = 0; i < N; ++i) xv[i] *= g[i];
                    }
#pragma unroll
                    for (int q = 0; q < RR; ++q)
#pragma unroll
                        for (int i = 0; i < N; ++i) acc[q][b] = fmaf(wv[q][i], xv[i], acc[q][b]);
                }
            }
        }
        if (!have_inv) {
            // The warp has seen every chunk of the input rows: the same 1/rms in every lane.
#pragma unroll
            for (int b = 0; b < B; ++b) inv[b] = rsqrtf(warp_sum(sq[b]) / (float)k + eps);
            have_inv = true;
        }
        float mine[RR];
#pragma unroll
        for (int q = 0; q < RR; ++q) {
            mine[q] = 0.0f;
#pragma unroll
            for (int b = 0; b < B; ++b) {
                const float s = warp_sum(acc[q][b]) * inv[b];
                if (lane == b) mine[q] = s;
            }
        }
        if (lane < nb) {
#pragma unroll
            for (int q = 0; q < OR; ++q) {
                const uint32_t row = row0 + q;
                if (row >= n) break;
                T *o = out + (size_t)lane * n + row;
                if constexpr (SWI) {
                    const float gt = to_f32(from_f32<T>(mine[q])), up = to_f32(from_f32<T>(mine[OR + q]));
                    *o = from_f32<T>(gt / (1.0f + __expf(-gt)) * up);
                } else {
                    float v = mine[q];
                    if (bias != nullptr) v += to_f32(bias[row]);
                    if (residual) v += to_f32(*o);
                    *o = from_f32<T>(v);
                }
            }
        }
    }
}

// gemv-fold's GEMV for long rows (the down projection, 8192 wide at Llama-3.2-1B): gemv gives a
// warp whole rows, so a 16 KB row is 4 dependent rounds of 8 loads a lane, and Llama's 2048 rows
// fill only 2048 warps (call 1 of session 8: 15.95 us from HBM, 2.10 TB/s, against an 11 us floor).
// Here the block's warps split each row's chunks (warp w the w-th quarter, lane, lane + 32, ...),
// one round of 8 loads a lane at 8192 wide, and sum the 4 partials in warp order in shared memory.
// No prologue; bias and residual as gemv's epilogue.
template <typename T, int B>
__device__ void gemv_split(const T *__restrict__ w, const T *__restrict__ x, const T *__restrict__ bias,
                           T *__restrict__ out, uint32_t nb, uint32_t n, uint32_t k, uint32_t ldx, uint32_t residual) {
    constexpr int N = 16 / sizeof(T);
    constexpr int R = rows_a_warp(B);
    constexpr int UNROLL = 8 / R;
    __shared__ float partial[GV_WARPS][R][B];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t chunks = k / N, per = (chunks + GV_WARPS - 1) / GV_WARPS;
    const uint32_t c0 = warp * per, c1 = min(chunks, c0 + per);
    {
        const uint32_t first = blockIdx.x * R;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (first + r >= n) break;
            const T *wr0 = w + (size_t)(first + r) * k;
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const uint32_t c = c0 + lane + 32u * u;
                if (c < c1) prefetch_l2(wr0 + (size_t)c * N);
            }
        }
    }
    pdl_wait();
    pdl_trigger();
    for (uint32_t row0 = blockIdx.x * R; row0 < n; row0 += gridDim.x * R) {
        const T *wr[R];
#pragma unroll
        for (int r = 0; r < R; ++r) wr[r] = w + (size_t)min(row0 + r, n - 1) * k;
        float acc[R][B];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < B; ++b) acc[r][b] = 0.0f;
#pragma unroll(UNROLL)
        for (uint32_t c = c0 + lane; c < c1; c += 32) {
            float wv[R][N];
#pragma unroll
            for (int r = 0; r < R; ++r) load16_ro<T, N>(wv[r], wr[r] + (size_t)c * N);
#pragma unroll
            for (int b = 0; b < B; ++b) {
                float xv[N];
                load16<T, N>(xv, x + (size_t)row_of(b, nb) * ldx + (size_t)c * N);
#pragma unroll
                for (int r = 0; r < R; ++r)
#pragma unroll
                    for (int i = 0; i < N; ++i) acc[r][b] = fmaf(wv[r][i], xv[i], acc[r][b]);
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < B; ++b) {
                const float s = warp_sum(acc[r][b]);
                if (lane == 0) partial[warp][r][b] = s;
            }
        __syncthreads();
        if (threadIdx.x < (uint32_t)(R * B)) {
            const int r = threadIdx.x / B, b = threadIdx.x % B;
            const uint32_t row = row0 + r;
            if ((uint32_t)b < nb && row < n) {
                float v = 0.0f;
#pragma unroll
                for (int q = 0; q < GV_WARPS; ++q) v += partial[q][r][b];
                if (bias != nullptr) v += to_f32(bias[row]);
                T *o = out + (size_t)b * n + row;
                if (residual) v += to_f32(*o);
                *o = from_f32<T>(v);
            }
        }
        __syncthreads();
    }
}
