// The decode step's GEMV (issue 30, decode_kernels = "gemv"), launched by src/ops/decode/gemv.rs:
// y (B, n) = prologue(x) (B, k) . W^T for W (n, k) row-major and a decode batch B of 1..8, with the
// step's small kernels folded into it:
//   prologue RMS:    x = rms_norm(x) * norm_w (each block sums the B rows' squares itself: k
//                    values a row from L2, 4 KB at Llama-3.2-1B's hidden 2048 in bf16), for Q|K|V
//                    and gate|up: no add_rms_norm launch;
//   prologue SWIGLU: x = silu(gu[:, :k]) * gu[:, k:] (x is the gate|up output, rows of 2k), for the
//                    down projection: no swiglu launch;
//   epilogue:        + bias[n] (optional), and with `residual` out += y in place (o_proj and down
//                    write into the residual stream: no add launch, no allocation).
// Each warp owns whole output rows (grid-strided over the rows): a lane reads 16 bytes of the row
// at a time, so every weight byte is read once for all B batch rows; the B inputs come from L1/L2.
// Floors (bf16, B 1): the weight bytes over HBM bandwidth, e.g. Llama-3.2-1B's gate|up 67 MB =
// 14 us at 4.8 TB/s; SmolLM2's 576-wide o_proj (0.66 MB) is bound by its launch and latency.
// Everything is computed in f32; only y is rounded to T (the plain path also rounds the normed row
// and the SwiGLU product to T: the checks bound the difference).
#include "common.cuh"

#define GV_WARPS 4
#define GV_MAXB 8
#define PRO_NONE 0
#define PRO_RMS 1
#define PRO_SWIGLU 2

// N consecutive values as f32 from one 16-byte load (the launcher checks alignment).
template <typename T, int N> __device__ __forceinline__ void load16(float *dst, const T *src) {
    const uint4 raw = *reinterpret_cast<const uint4 *>(src);
    const T *v = reinterpret_cast<const T *>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = to_f32(v[i]);
}

// The weights through the read-only path (each byte read once: nothing to keep in L1).
template <typename T, int N> __device__ __forceinline__ void load16_ro(float *dst, const T *src) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4 *>(src));
    const T *v = reinterpret_cast<const T *>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = to_f32(v[i]);
}

// Rows past the batch (b >= nb, in a kernel for a bound B) recompute the last row instead of
// branching: no branch between the unrolled loads, and their sums are never written.
__device__ __forceinline__ uint32_t row_of(int b, uint32_t nb) { return min((uint32_t)b, nb - 1); }

// Output rows a warp computes at once for a batch bound B (the launcher's ROWS_A_WARP).
__host__ __device__ constexpr int rows_a_warp(int b) { return b >= 4 ? 4 : b; }

// B: a bound on the batch rows (1, 2, 4 or 8: fewer kernels for the driver to JIT), nb the rows.
template <typename T, int B, int PRO>
__device__ void gemv(const T *__restrict__ w, const T *__restrict__ x, const T *__restrict__ norm_w,
                     const T *__restrict__ bias, T *__restrict__ out, uint32_t nb, uint32_t n, uint32_t k,
                     uint32_t ldx, uint32_t residual, float eps) {
    constexpr int N = 16 / sizeof(T);
    // Rows a warp computes at once (R): each input load then feeds R weight loads. At B 8 with one
    // row a warp the 8 input loads a weight load brings made the GEMV bound by L1 (an H100: 3x
    // cuBLAS at Llama's gate|up); R 4 cuts that 4x. 16-byte weight loads in flight a lane:
    // R x UNROLL = 8 (~36 KB must be in flight a multiprocessor to stream HBM).
    constexpr int R = rows_a_warp(B);
    constexpr int UNROLL = 8 / R;
    __shared__ float inv_rms[GV_MAXB];
    __shared__ float partial[GV_WARPS][GV_MAXB];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t chunks = k / N;
    // The weights do not depend on the previous kernel: under Programmatic Dependent Launch the
    // warp's first rows (its first UNROLL loads a lane) go to L2 while that kernel finishes.
    {
        const uint32_t first = (blockIdx.x * GV_WARPS + warp) * R;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (first + r >= n) break;
            const T *wr0 = w + (size_t)(first + r) * k;
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const uint32_t c = lane + 32u * u;
                if (c < chunks) prefetch_l2(wr0 + (size_t)c * N);
            }
        }
    }
    pdl_wait();
    pdl_trigger();
    if constexpr (PRO == PRO_RMS) {
        float sq[B];
#pragma unroll
        for (int b = 0; b < B; ++b) sq[b] = 0.0f;
        for (uint32_t c = threadIdx.x; c < chunks; c += blockDim.x) {
#pragma unroll
            for (int b = 0; b < B; ++b) {
                float v[N];
                load16<T, N>(v, x + (size_t)row_of(b, nb) * ldx + (size_t)c * N);
#pragma unroll
                for (int i = 0; i < N; ++i) sq[b] = fmaf(v[i], v[i], sq[b]);
            }
        }
#pragma unroll
        for (int b = 0; b < B; ++b) {
            const float s = warp_sum(sq[b]);
            if (lane == 0) partial[warp][b] = s;
        }
        __syncthreads();
        if (threadIdx.x < nb) {
            float t = 0.0f;
#pragma unroll
            for (int q = 0; q < GV_WARPS; ++q) t += partial[q][threadIdx.x];
            inv_rms[threadIdx.x] = rsqrtf(t / (float)k + eps);
        }
        __syncthreads();
    }
    float scale[B];
#pragma unroll
    for (int b = 0; b < B; ++b) scale[b] = PRO == PRO_RMS ? inv_rms[row_of(b, nb)] : 1.0f;
    for (uint32_t row0 = (blockIdx.x * GV_WARPS + warp) * R; row0 < n; row0 += gridDim.x * GV_WARPS * R) {
        // Rows past n (the last warp's) recompute row n - 1 and are not written.
        const T *wr[R];
#pragma unroll
        for (int r = 0; r < R; ++r) wr[r] = w + (size_t)min(row0 + r, n - 1) * k;
        float acc[R][B];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < B; ++b) acc[r][b] = 0.0f;
#pragma unroll(UNROLL)
        for (uint32_t c = lane; c < chunks; c += 32) {
            float wv[R][N];
#pragma unroll
            for (int r = 0; r < R; ++r) load16_ro<T, N>(wv[r], wr[r] + (size_t)c * N);
            float g[N];
            if constexpr (PRO == PRO_RMS) load16<T, N>(g, norm_w + (size_t)c * N);
#pragma unroll
            for (int b = 0; b < B; ++b) {
                const T *xr = x + (size_t)row_of(b, nb) * ldx + (size_t)c * N;
                float xv[N];
                load16<T, N>(xv, xr);
                if constexpr (PRO == PRO_SWIGLU) {
                    float u[N];
                    load16<T, N>(u, xr + k);
#pragma unroll
                    for (int i = 0; i < N; ++i) xv[i] = xv[i] / (1.0f + __expf(-xv[i])) * u[i];
                } else if constexpr (PRO == PRO_RMS) {
#pragma unroll
                    for (int i = 0; i < N; ++i) xv[i] *= scale[b] * g[i];
                }
#pragma unroll
                for (int r = 0; r < R; ++r)
#pragma unroll
                    for (int i = 0; i < N; ++i) acc[r][b] = fmaf(wv[r][i], xv[i], acc[r][b]);
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float mine = 0.0f;
#pragma unroll
            for (int b = 0; b < B; ++b) {
                const float s = warp_sum(acc[r][b]);
                if (lane == b) mine = s;
            }
            const uint32_t row = row0 + r;
            if (lane < nb && row < n) {
                if (bias != nullptr) mine += to_f32(bias[row]);
                T *o = out + (size_t)lane * n + row;
                if (residual) mine += to_f32(*o);
                *o = from_f32<T>(mine);
            }
        }
    }
}

// The same GEMV with its weights streamed by the Tensor Memory Accelerator (decode_kernels =
// "gemv-bulk"): the loads above keep 8 x 16 bytes in flight a lane, every one through the L1's
// miss tracking, and reach ~77 % of the copy bandwidth at Llama's gate|up (session 6's profile);
// a bulk copy (cp.async.bulk, one instruction for a whole stage) keeps STAGES x stage bytes in
// flight a block with no register or L1 miss slot held for them. Each block owns a contiguous
// range of rows (the launcher sizes the grid to the blocks resident at once), cut into stages of
// stage_rows rows (GV_WARPS x rows a warp; fewer than GV_WARPS only for rows so long that two
// stages of GV_WARPS rows pass 227 KB), a ring of `stages` slots in dynamic shared memory, each
// with an mbarrier that the copy completes. The first slots are requested before griddepcontrol.wait: under PDL a
// block's whole share of a small matrix (o, Q|K|V) streams in while the predecessor finishes.
// Warp w computes the stage's rows w, w + GV_WARPS, ... with the chunk order of the loads' kernel
// (lane, lane + 32, ...), so both sum in the same order; a slot is refilled after __syncthreads.
#define GV_MAX_STAGES 8
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void bulk_load(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
                 : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
#endif
}

__device__ __forceinline__ void bulk_wait(uint64_t *bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t done = 0;
    while (!done) {
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(smem_addr(bar)), "r"(parity)
                     : "memory");
    }
#endif
}

template <typename T, int B, int PRO>
__device__ void gemv_bulk(const T *__restrict__ w, const T *__restrict__ x, const T *__restrict__ norm_w,
                          const T *__restrict__ bias, T *__restrict__ out, uint32_t nb, uint32_t n, uint32_t k,
                          uint32_t ldx, uint32_t residual, float eps, uint32_t stage_rows, uint32_t stages) {
    static_assert(PRO != PRO_SWIGLU, "the bulk GEMV has no SwiGLU prologue (the decoder runs swiglu_rows)");
    constexpr int N = 16 / sizeof(T);
    extern __shared__ __align__(128) unsigned char ring[];
    __shared__ __align__(8) uint64_t full[GV_MAX_STAGES];
    __shared__ float inv_rms[GV_MAXB];
    __shared__ float partial[GV_WARPS][GV_MAXB];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t chunks = k / N;
    const uint32_t r0 = (uint32_t)((uint64_t)n * blockIdx.x / gridDim.x);
    const uint32_t r1 = (uint32_t)((uint64_t)n * (blockIdx.x + 1) / gridDim.x);
    const uint32_t nst = (r1 - r0 + stage_rows - 1) / stage_rows;
    const size_t row_bytes = (size_t)k * sizeof(T), slot_bytes = stage_rows * row_bytes;
    // The stage s's rows, as a byte count (the last stage may be short).
    auto stage_bytes = [&](uint32_t s) { return (uint32_t)(min(stage_rows, r1 - r0 - s * stage_rows) * row_bytes); };
    if (threadIdx.x == 0) {
        for (uint32_t i = 0; i < stages; ++i)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&full[i])) : "memory");
        // The barriers' initialization visible to the copy engine (the async proxy).
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        // The weights do not depend on the previous kernel: the first stages start now.
        for (uint32_t s = 0; s < stages && s < nst; ++s)
            bulk_load(ring + s * slot_bytes, w + (size_t)(r0 + s * stage_rows) * k, stage_bytes(s), &full[s]);
    }
    pdl_wait();
    pdl_trigger();
    if constexpr (PRO == PRO_RMS) {
        float sq[B];
#pragma unroll
        for (int b = 0; b < B; ++b) sq[b] = 0.0f;
        for (uint32_t c = threadIdx.x; c < chunks; c += blockDim.x) {
#pragma unroll
            for (int b = 0; b < B; ++b) {
                float v[N];
                load16<T, N>(v, x + (size_t)row_of(b, nb) * ldx + (size_t)c * N);
#pragma unroll
                for (int i = 0; i < N; ++i) sq[b] = fmaf(v[i], v[i], sq[b]);
            }
        }
#pragma unroll
        for (int b = 0; b < B; ++b) {
            const float s = warp_sum(sq[b]);
            if (lane == 0) partial[warp][b] = s;
        }
        __syncthreads();
        if (threadIdx.x < nb) {
            float t = 0.0f;
#pragma unroll
            for (int q = 0; q < GV_WARPS; ++q) t += partial[q][threadIdx.x];
            inv_rms[threadIdx.x] = rsqrtf(t / (float)k + eps);
        }
    }
    // Also orders thread 0's barrier initialization before any other thread's wait.
    __syncthreads();
    float scale[B];
#pragma unroll
    for (int b = 0; b < B; ++b) scale[b] = PRO == PRO_RMS ? inv_rms[row_of(b, nb)] : 1.0f;
    for (uint32_t s = 0; s < nst; ++s) {
        const uint32_t slot = s % stages;
        bulk_wait(&full[slot], (s / stages) & 1u);
        const uint32_t first = r0 + s * stage_rows, rows = min(stage_rows, r1 - first);
        const T *stage = reinterpret_cast<const T *>(ring + slot * slot_bytes);
        for (uint32_t j = warp; j < rows; j += GV_WARPS) {
            const T *wr = stage + (size_t)j * k;
            float acc[B];
#pragma unroll
            for (int b = 0; b < B; ++b) acc[b] = 0.0f;
#pragma unroll 4
            for (uint32_t c = lane; c < chunks; c += 32) {
                float wv[N];
                load16<T, N>(wv, wr + (size_t)c * N);
                float g[N];
                if constexpr (PRO == PRO_RMS) load16<T, N>(g, norm_w + (size_t)c * N);
#pragma unroll
                for (int b = 0; b < B; ++b) {
                    float xv[N];
                    load16<T, N>(xv, x + (size_t)row_of(b, nb) * ldx + (size_t)c * N);
                    if constexpr (PRO == PRO_RMS) {
#pragma unroll
                        for (int i = 0; i < N; ++i) xv[i] *= scale[b] * g[i];
                    }
#pragma unroll
                    for (int i = 0; i < N; ++i) acc[b] = fmaf(wv[i], xv[i], acc[b]);
                }
            }
            float mine = 0.0f;
#pragma unroll
            for (int b = 0; b < B; ++b) {
                const float t = warp_sum(acc[b]);
                if (lane == b) mine = t;
            }
            const uint32_t row = first + j;
            if (lane < nb) {
                if (bias != nullptr) mine += to_f32(bias[row]);
                T *o = out + (size_t)lane * n + row;
                if (residual) mine += to_f32(*o);
                *o = from_f32<T>(mine);
            }
        }
        // Every warp is done with the slot: refill it with the stage `stages` ahead.
        __syncthreads();
        if (threadIdx.x == 0 && s + stages < nst)
            bulk_load(ring + slot * slot_bytes, w + (size_t)(first + stages * stage_rows) * k, stage_bytes(s + stages),
                      &full[slot]);
    }
}

#include "gemv_fold.cuh"
#include "gemv_long.cuh"

// act (rows, inter) = silu(gate) * up of gate_up (rows, 2 inter), in f32, rounded once: the down
// projection's input computed once a step. (The SwiGLU prologue recomputes it for every output
// row: 2048 x 8192 silu a step at Llama-3.2-1B, compute-bound at 28.9 us where the bytes take 11.)
template <typename T> __device__ void swiglu_rows(const T *gate_up, T *act, uint32_t rows, uint32_t inter) {
    pdl_wait();
    pdl_trigger();
    GRID_STRIDE(i, (size_t)rows * inter) {
        const size_t r = i / inter, c = i % inter;
        const float g = to_f32(gate_up[r * 2 * inter + c]), u = to_f32(gate_up[r * 2 * inter + inter + c]);
        act[i] = from_f32<T>(g / (1.0f + __expf(-g)) * u);
    }
}

#define GEMV_ONE(SUFFIX, T, B, PRO, PNAME)                                                                          \
    extern "C" __global__ void __launch_bounds__(GV_WARPS * 32)                                                     \
        gemv_##PNAME##_b##B##_##SUFFIX(const T *w, const T *x, const T *norm_w, const T *bias, T *out, uint32_t nb, \
                                       uint32_t n, uint32_t k, uint32_t ldx, uint32_t residual, float eps) {        \
        gemv<T, B, PRO>(w, x, norm_w, bias, out, nb, n, k, ldx, residual, eps);                                     \
    }

#define GEMV_BULK_ONE(SUFFIX, T, B, PRO, PNAME)                                                                     \
    extern "C" __global__ void __launch_bounds__(GV_WARPS * 32)                                                     \
        gemv_bulk_##PNAME##_b##B##_##SUFFIX(const T *w, const T *x, const T *norm_w, const T *bias, T *out,          \
                                            uint32_t nb, uint32_t n, uint32_t k, uint32_t ldx, uint32_t residual,   \
                                            float eps, uint32_t stage_rows, uint32_t stages) {                      \
        gemv_bulk<T, B, PRO>(w, x, norm_w, bias, out, nb, n, k, ldx, residual, eps, stage_rows, stages);            \
    }

#define GEMV_FOLD_ONE(SUFFIX, T, B, RMS, SWI, PNAME)                                                                \
    extern "C" __global__ void __launch_bounds__(GV_WARPS * 32)                                                     \
        gemv_fold_##PNAME##_b##B##_##SUFFIX(const T *w, const T *x, const T *norm_w, const T *bias, T *out,          \
                                            uint32_t nb, uint32_t n, uint32_t k, uint32_t ldx, uint32_t residual,   \
                                            float eps) {                                                            \
        gemv_fold<T, B, RMS, SWI>(w, x, norm_w, bias, out, nb, n, k, ldx, residual, eps);                           \
    }

// decode_kernels = "gemv-lean": gemv_fold with a lane's loads batched (gemv_fold.cuh's BATCH).
#define GEMV_FOLD_BATCHED_ONE(SUFFIX, T, B, RMS, SWI, PNAME)                                                        \
    extern "C" __global__ void __launch_bounds__(GV_WARPS * 32)                                                     \
        gemv_fold_batched_##PNAME##_b##B##_##SUFFIX(const T *w, const T *x, const T *norm_w, const T *bias, T *out,  \
                                                    uint32_t nb, uint32_t n, uint32_t k, uint32_t ldx,              \
                                                    uint32_t residual, float eps) {                                 \
        gemv_fold<T, B, RMS, SWI, true>(w, x, norm_w, bias, out, nb, n, k, ldx, residual, eps);                     \
    }

#define GEMV_SPLIT_ONE(SUFFIX, T, B)                                                                                \
    extern "C" __global__ void __launch_bounds__(GV_WARPS * 32)                                                     \
        gemv_split_plain_b##B##_##SUFFIX(const T *w, const T *x, const T *norm_w, const T *bias, T *out,             \
                                         uint32_t nb, uint32_t n, uint32_t k, uint32_t ldx, uint32_t residual,      \
                                         float eps) {                                                               \
        gemv_split<T, B>(w, x, bias, out, nb, n, k, ldx, residual);                                                 \
    }

#define GEMV_LONG_ONE(SUFFIX, T, B)                                                                                 \
    extern "C" __global__ void __launch_bounds__(GV_WARPS * 32)                                                     \
        gemv_long_plain_b##B##_##SUFFIX(const T *w, const T *x, const T *norm_w, const T *bias, T *out,              \
                                        uint32_t nb, uint32_t n, uint32_t k, uint32_t ldx, uint32_t residual,       \
                                        float eps) {                                                                \
        gemv_long<T, B>(w, x, bias, out, nb, n, k, ldx, residual);                                                  \
    }

#define GEMV_FOLD_BATCHES(SUFFIX, T, RMS, SWI, PNAME)                                                               \
    GEMV_FOLD_ONE(SUFFIX, T, 1, RMS, SWI, PNAME)                                                                    \
    GEMV_FOLD_ONE(SUFFIX, T, 2, RMS, SWI, PNAME)                                                                    \
    GEMV_FOLD_ONE(SUFFIX, T, 4, RMS, SWI, PNAME)                                                                    \
    GEMV_FOLD_ONE(SUFFIX, T, 8, RMS, SWI, PNAME)

#define GEMV_FOLD_BATCHED_BATCHES(SUFFIX, T, RMS, SWI, PNAME)                                                       \
    GEMV_FOLD_BATCHED_ONE(SUFFIX, T, 1, RMS, SWI, PNAME)                                                            \
    GEMV_FOLD_BATCHED_ONE(SUFFIX, T, 2, RMS, SWI, PNAME)                                                            \
    GEMV_FOLD_BATCHED_ONE(SUFFIX, T, 4, RMS, SWI, PNAME)                                                            \
    GEMV_FOLD_BATCHED_ONE(SUFFIX, T, 8, RMS, SWI, PNAME)

#define GEMV_BATCHES(SUFFIX, T, PRO, PNAME)                                                                         \
    GEMV_ONE(SUFFIX, T, 1, PRO, PNAME)                                                                              \
    GEMV_ONE(SUFFIX, T, 2, PRO, PNAME)                                                                              \
    GEMV_ONE(SUFFIX, T, 4, PRO, PNAME)                                                                              \
    GEMV_ONE(SUFFIX, T, 8, PRO, PNAME)

#define GEMV_BULK_BATCHES(SUFFIX, T, PRO, PNAME)                                                                    \
    GEMV_BULK_ONE(SUFFIX, T, 1, PRO, PNAME)                                                                         \
    GEMV_BULK_ONE(SUFFIX, T, 2, PRO, PNAME)                                                                         \
    GEMV_BULK_ONE(SUFFIX, T, 4, PRO, PNAME)                                                                         \
    GEMV_BULK_ONE(SUFFIX, T, 8, PRO, PNAME)

#define GEMV_ALL(SUFFIX, T)                                                                                         \
    extern "C" __global__ void swiglu_rows_##SUFFIX(const T *gate_up, T *act, uint32_t rows, uint32_t inter) {      \
        swiglu_rows<T>(gate_up, act, rows, inter);                                                                  \
    }                                                                                                               \
    GEMV_BATCHES(SUFFIX, T, PRO_NONE, plain)                                                                        \
    GEMV_BATCHES(SUFFIX, T, PRO_RMS, rms)                                                                           \
    GEMV_BATCHES(SUFFIX, T, PRO_SWIGLU, swiglu)                                                                     \
    GEMV_BULK_BATCHES(SUFFIX, T, PRO_NONE, plain)                                                                   \
    GEMV_BULK_BATCHES(SUFFIX, T, PRO_RMS, rms)                                                                      \
    GEMV_FOLD_BATCHES(SUFFIX, T, true, false, rms)                                                                  \
    GEMV_FOLD_BATCHES(SUFFIX, T, true, true, rms_swiglu)                                                            \
    GEMV_FOLD_BATCHED_BATCHES(SUFFIX, T, true, false, rms)                                                          \
    GEMV_FOLD_BATCHED_BATCHES(SUFFIX, T, true, true, rms_swiglu)                                                    \
    GEMV_SPLIT_ONE(SUFFIX, T, 1)                                                                                    \
    GEMV_SPLIT_ONE(SUFFIX, T, 2)                                                                                    \
    GEMV_SPLIT_ONE(SUFFIX, T, 4)                                                                                    \
    GEMV_SPLIT_ONE(SUFFIX, T, 8)                                                                                    \
    GEMV_LONG_ONE(SUFFIX, T, 1)                                                                                     \
    GEMV_LONG_ONE(SUFFIX, T, 2)                                                                                     \
    GEMV_LONG_ONE(SUFFIX, T, 4)                                                                                     \
    GEMV_LONG_ONE(SUFFIX, T, 8)

// One PTX module a dtype (build.rs compiles this file once with each GEMV_DTYPE), so a bf16 run
// JIT-compiles its 12 kernels only.
#if GEMV_DTYPE == 0
GEMV_ALL(f32, float)
#elif GEMV_DTYPE == 1
GEMV_ALL(f16, __half)
#else
GEMV_ALL(bf16, __nv_bfloat16)
#endif
