// gemv_long (session 9): gemv (no prologue; bias, residual) with its loads batched explicitly, included
// by gemv.cu after its loads (row_of, rows_a_warp, warp_sum).
//
// Why: gemv's `#pragma unroll(UNROLL)` over `for (c = lane; c < chunks; c += 32)` compiles (nvcc 13.0,
// sm_90a, bf16 b1) into a remainder loop of one guarded iteration at a time and a main loop that
// issues the 16-byte weight loads two or so at a time between the FMAs (40 registers): a lane keeps
// ~2 weight loads in flight, not 8, which is why the down projection (2048 rows x 16 KB, one row a
// warp, ~15 warps a multiprocessor) streams at ~2.5 TB/s of 4.3. Here a lane issues all L weight
// loads of its R rows and the matching input loads (predicated, never a branch) into registers
// before it converts or multiplies any: R x L x 16 bytes of weights in flight a lane (8 x 16 at B 1).
//
// The same chunks in the same order a lane (c = lane, lane + 32, ...), the same FMAs in the same
// order, the same warp sums and epilogue: the same output bits as gemv with no prologue.
template <typename T, int B>
__device__ void gemv_long(const T *__restrict__ w, const T *__restrict__ x, const T *__restrict__ bias,
                          T *__restrict__ out, uint32_t nb, uint32_t n, uint32_t k, uint32_t ldx,
                          uint32_t residual) {
    constexpr int N = 16 / sizeof(T);
    constexpr int R = rows_a_warp(B);
    constexpr int L = 8 / R;  // chunks a lane loads at once a row
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t chunks = k / N;
    {
        const uint32_t first = (blockIdx.x * GV_WARPS + warp) * R;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (first + r >= n) break;
            const T *wr0 = w + (size_t)(first + r) * k;
#pragma unroll
            for (int u = 0; u < L; ++u) {
                const uint32_t c = lane + 32u * u;
                if (c < chunks) prefetch_l2(wr0 + (size_t)c * N);
            }
        }
    }
    pdl_wait();
    pdl_trigger();
    for (uint32_t row0 = (blockIdx.x * GV_WARPS + warp) * R; row0 < n; row0 += gridDim.x * GV_WARPS * R) {
        const T *wr[R];
#pragma unroll
        for (int r = 0; r < R; ++r) wr[r] = w + (size_t)min(row0 + r, n - 1) * k;
        float acc[R][B];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < B; ++b) acc[r][b] = 0.0f;
        for (uint32_t c0 = lane; c0 < chunks; c0 += 32u * L) {
            uint4 wraw[R][L], xraw[B][L];
#pragma unroll
            for (int u = 0; u < L; ++u) {
                const uint32_t c = c0 + 32u * u;
                const bool ok = c < chunks;
#pragma unroll
                for (int r = 0; r < R; ++r)
                    wraw[r][u] = ok ? __ldg(reinterpret_cast<const uint4 *>(wr[r] + (size_t)c * N)) : make_uint4(0, 0, 0, 0);
#pragma unroll
                for (int b = 0; b < B; ++b)
                    xraw[b][u] = ok ? *reinterpret_cast<const uint4 *>(x + (size_t)row_of(b, nb) * ldx + (size_t)c * N)
                                    : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < L; ++u) {
                if (c0 + 32u * u >= chunks) break;  // past the row's end: nothing loaded
#pragma unroll
                for (int b = 0; b < B; ++b) {
                    const T *xv = reinterpret_cast<const T *>(&xraw[b][u]);
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const T *wv = reinterpret_cast<const T *>(&wraw[r][u]);
#pragma unroll
                        for (int i = 0; i < N; ++i) acc[r][b] = fmaf(to_f32(wv[i]), to_f32(xv[i]), acc[r][b]);
                    }
                }
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
