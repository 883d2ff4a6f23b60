// The W8A8 kernels (src/ops/eight_bit/int8_gemm.rs, src/ops/eight_bit/fp8_gemm.rs), compiled to PTX by build.rs
// (feature "cuda"): per-token activation quantization to int8 or E4M3, the int8 GEMM's
// dequantization, and the FFN's GELU with the quantization of its output fused in. The numerics
// are those of src/model/parts/w8a8.rs (the CPU reference); examples/int8_check.rs checks them.
#include "common.cuh"
#include "norm_row.cuh"

// W8A8 int8 (src/ops/eight_bit/int8_gemm.rs), the numerics of src/model/parts/w8a8.rs on the GPU.
// quantize_rows_i8: one warp per row of x (rows, cols): scale = max |x| / 127 (computed as candle's
// scalar division, x * (1/127)), 1 for an all-zero row; q = clamp(round(x * (1 / scale)), -127, 127),
// rounding half away from zero (roundf), as the CPU reference. The reciprocal once per row, not an
// IEEE division per value: the division was a fifth of the fused GELU kernels' arithmetic. 16-byte loads and N-byte stores
// where the row allows (scalar 2-byte loads ran it at a fraction of the bandwidth).
template <typename T>
__device__ void quantize_rows_i8(const T *x, int8_t *q, float *scale, uint32_t rows, uint32_t cols) {
    constexpr int N = 16 / sizeof(T);
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols;
    int8_t *qr = q + (size_t)row * cols;
    const bool vec = cols % N == 0 && reinterpret_cast<uintptr_t>(xr) % 16 == 0;
    float m = 0.0f;
    bool nan = false;
    if (vec) {
        for (uint32_t c = lane * N; c < cols; c += 32 * N) {
            alignas(16) T v[N];
            copy_vec<T, N>(v, xr + c);
#pragma unroll
            for (int k = 0; k < N; ++k) {
                const float f = to_f32(v[k]);
                nan |= isnan(f);
                m = fmaxf(m, fabsf(f));
            }
        }
    } else {
        for (uint32_t c = lane; c < cols; c += 32) {
            const float v = to_f32(xr[c]);
            nan |= isnan(v);
            m = fmaxf(m, fabsf(v));
        }
    }
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, off));
    // A NaN input makes its row's scale NaN, so it reaches the output instead of clamping to -127.
    nan = __any_sync(0xffffffff, nan);
    const float s = nan ? NAN : (m == 0.0f ? 1.0f : m * (float)(1.0 / 127.0));
    const float inv = 1.0f / s;
    auto quant = [inv](float v) { return (int8_t)fminf(fmaxf(roundf(v * inv), -127.0f), 127.0f); };
    if (vec) {
        for (uint32_t c = lane * N; c < cols; c += 32 * N) {
            alignas(16) T v[N];
            alignas(8) int8_t o[N];
            copy_vec<T, N>(v, xr + c);
#pragma unroll
            for (int k = 0; k < N; ++k) o[k] = quant(to_f32(v[k]));
            if constexpr (N == 8) {
                *reinterpret_cast<uint2 *>(qr + c) = *reinterpret_cast<const uint2 *>(o);
            } else {
                *reinterpret_cast<uint32_t *>(qr + c) = *reinterpret_cast<const uint32_t *>(o);
            }
        }
    } else {
        for (uint32_t c = lane; c < cols; c += 32) qr[c] = quant(to_f32(xr[c]));
    }
    if (lane == 0) scale[row] = s;
}

// quantize_rows_e4m3: as quantize_rows_i8 for FP8: scale = max |x| / 448 (x * (1/448)), 1 for an
// all-zero row; q = E4M3(clamp(x * (1 / scale), -448, 448)), rounded to nearest even by the hardware's
// conversion (cvt.rn.satfinite.e4m3x2), as the CPU reference's float8 rounding. 16-byte loads and
// N-byte stores where the row allows, as quantize_rows_i8 (the first version's 2-byte loads per
// lane ran it at a fraction of the bandwidth); pairs of columns go through one paired conversion.
template <typename T>
__device__ void quantize_rows_e4m3(const T *x, uint8_t *q, float *scale, uint32_t rows, uint32_t cols) {
    constexpr int N = 16 / sizeof(T);
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols;
    uint8_t *qr = q + (size_t)row * cols;
    const bool vec = cols % N == 0 && reinterpret_cast<uintptr_t>(xr) % 16 == 0;
    float m = 0.0f;
    bool nan = false;
    if (vec) {
        for (uint32_t c = lane * N; c < cols; c += 32 * N) {
            alignas(16) T v[N];
            copy_vec<T, N>(v, xr + c);
#pragma unroll
            for (int k = 0; k < N; ++k) {
                const float f = to_f32(v[k]);
                nan |= isnan(f);
                m = fmaxf(m, fabsf(f));
            }
        }
    } else {
        for (uint32_t c = lane; c < cols; c += 32) {
            const float v = to_f32(xr[c]);
            nan |= isnan(v);
            m = fmaxf(m, fabsf(v));
        }
    }
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, off));
    nan = __any_sync(0xffffffff, nan);
    const float s = nan ? NAN : (m == 0.0f ? 1.0f : m * (float)(1.0 / 448.0));
    const float inv = 1.0f / s;
    auto clamp = [inv](float v) { return fminf(fmaxf(v * inv, -448.0f), 448.0f); };
    if (vec) {
        for (uint32_t c = lane * N; c < cols; c += 32 * N) {
            alignas(16) T v[N];
            alignas(8) __nv_fp8x2_storage_t o[N / 2];
            copy_vec<T, N>(v, xr + c);
#pragma unroll
            for (int k = 0; k < N / 2; ++k)
                o[k] = __nv_cvt_float2_to_fp8x2(make_float2(clamp(to_f32(v[2 * k])), clamp(to_f32(v[2 * k + 1]))),
                                                __NV_SATFINITE, __NV_E4M3);
            if constexpr (N == 8) {
                *reinterpret_cast<uint2 *>(qr + c) = *reinterpret_cast<const uint2 *>(o);
            } else {
                *reinterpret_cast<uint32_t *>(qr + c) = *reinterpret_cast<const uint32_t *>(o);
            }
        }
    } else {
        for (uint32_t c = lane; c < cols; c += 32)
            qr[c] = __nv_cvt_float_to_fp8(clamp(to_f32(xr[c])), __NV_SATFINITE, __NV_E4M3);
    }
    if (lane == 0) scale[row] = s;
}

// dequant_i32: out[r, n] = act(acc[r, n] * sx[r] * sb[n] + sb[cols + n]) from the int8 GEMM's
// int32 products, with sb = (per-channel weight scale; bias in f32), in the CPU reference's order.
// Four products a thread (cuBLASLt's int8 GEMMs need cols % 4 == 0) with 32-bit index math (the
// caller keeps rows * cols < 2^32): a 64-bit division per element cost more than its bytes.
template <typename T, bool GELU>
__device__ void dequant_i32(const int32_t *acc, const float *sx, const float *sb, T *out, uint32_t rows,
                            uint32_t cols) {
    const uint32_t quads = rows * (cols / 4);
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < quads; i += gridDim.x * blockDim.x) {
        const uint32_t e = i * 4, r = e / cols, n = e - r * cols;
        const int4 a = *reinterpret_cast<const int4 *>(acc + e);
        const float4 w = *reinterpret_cast<const float4 *>(sb + n);
        const float4 b = *reinterpret_cast<const float4 *>(sb + cols + n);
        const float s = sx[r];
        alignas(16) T o[4];
        o[0] = from_f32<T>(act<GELU>((float)a.x * s * w.x + b.x));
        o[1] = from_f32<T>(act<GELU>((float)a.y * s * w.y + b.y));
        o[2] = from_f32<T>(act<GELU>((float)a.z * s * w.z + b.z));
        o[3] = from_f32<T>(act<GELU>((float)a.w * s * w.w + b.w));
        copy_vec<T, 4>(out + e, o);
    }
}

#define QUANTIZE_I8(NAME, T) extern "C" __global__ void NAME(const T *x, int8_t *q, float *scale, uint32_t rows, \
    uint32_t cols) { quantize_rows_i8<T>(x, q, scale, rows, cols); }
#define DEQUANT_I32(NAME, T, G) extern "C" __global__ void NAME(const int32_t *acc, const float *sx, const float *sb, \
    T *out, uint32_t rows, uint32_t cols) { dequant_i32<T, G>(acc, sx, sb, out, rows, cols); }

#define QUANTIZE_E4M3(NAME, T) extern "C" __global__ void NAME(const T *x, uint8_t *q, float *scale, uint32_t rows, \
    uint32_t cols) { quantize_rows_e4m3<T>(x, q, scale, rows, cols); }
QUANTIZE_E4M3(quantize_rows_e4m3_f32, float)
QUANTIZE_E4M3(quantize_rows_e4m3_f16, __half)
QUANTIZE_E4M3(quantize_rows_e4m3_bf16, __nv_bfloat16)
QUANTIZE_I8(quantize_rows_i8_f32, float)
QUANTIZE_I8(quantize_rows_i8_f16, __half)
QUANTIZE_I8(quantize_rows_i8_bf16, __nv_bfloat16)
DEQUANT_I32(dequant_i32_none_f32, float, false)
DEQUANT_I32(dequant_i32_none_f16, __half, false)
DEQUANT_I32(dequant_i32_none_bf16, __nv_bfloat16, false)
DEQUANT_I32(dequant_i32_gelu_f32, float, true)
DEQUANT_I32(dequant_i32_gelu_f16, __half, true)
DEQUANT_I32(dequant_i32_gelu_bf16, __nv_bfloat16, true)

// static_row_scales: the row scales of codes written with static per-column scales (FFN-in's
// CUTLASS epilogue, device.ffn_activation_scales = "static"): 1 for every row (the steps are
// folded into FFN-out's weights), NaN where the input row's own scale sx[r] is NaN, so that a NaN
// in FFN-in's input reaches its row of FFN-out's output as in the dynamic path (int8 codes cannot
// hold a NaN).
extern "C" __global__ void static_row_scales(const float *sx, float *scale, uint32_t rows) {
    const uint32_t r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < rows) scale[r] = isnan(sx[r]) ? NAN : 1.0f;
}

// Activation quantization fused into the kernel that produces the activation: the FFN's GELU,
// whose output feeds only the next 8-bit GEMM, is never stored in the float dtype. One block of
// 256 threads per row (a warp per row left an H200 mostly idle at 2048 rows and ran slower than
// the two passes it replaces); each thread computes up to 4 x 4 of the row's values once, as the
// unfused path stores them (rounded to T), keeps them in registers for the row's largest
// magnitude, then quantizes them with the scale and rounding of quantize_rows_i8 /
// quantize_rows_e4m3: the fused and the two-pass paths give the same bytes. Rows of up to
// ROW_THREADS * ROW_QUADS * 4 = 4096 values (the launcher refuses wider ones).
constexpr int ROW_THREADS = 256, ROW_QUADS = 4;

// `inv` is 1 / the row's scale.
template <bool FP8> __device__ __forceinline__ uint8_t quantize_one(float v, float inv) {
    if constexpr (FP8) {
        return __nv_cvt_float_to_fp8(fminf(fmaxf(v * inv, -448.0f), 448.0f), __NV_SATFINITE, __NV_E4M3);
    } else {
        return (uint8_t)(int8_t)fminf(fmaxf(roundf(v * inv), -127.0f), 127.0f);
    }
}

// `value4(c, v)` writes the row's values c .. c + 3 (cols % 4 == 0) into v.
template <bool FP8, typename V>
__device__ __forceinline__ void quantize_row_of(V value4, uint32_t cols, uint8_t *qr, float *scale) {
    __shared__ float warp_max[ROW_THREADS / 32];
    __shared__ int warp_nan[ROW_THREADS / 32];
    const uint32_t t = threadIdx.x, lane = t % 32, warp = t / 32;
    float v[ROW_QUADS][4];
    float m = 0.0f;
    bool nan = false;
#pragma unroll
    for (int j = 0; j < ROW_QUADS; ++j) {
        const uint32_t c = (j * ROW_THREADS + t) * 4;
        if (c < cols) {
            value4(c, v[j]);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                nan |= isnan(v[j][k]);
                m = fmaxf(m, fabsf(v[j][k]));
            }
        }
    }
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, off));
    nan = __any_sync(0xffffffff, nan);
    if (lane == 0) {
        warp_max[warp] = m;
        warp_nan[warp] = nan;
    }
    __syncthreads();
    m = 0.0f;
    nan = false;
#pragma unroll
    for (int w = 0; w < ROW_THREADS / 32; ++w) {
        m = fmaxf(m, warp_max[w]);
        nan |= warp_nan[w] != 0;
    }
    const float s = nan ? NAN : (m == 0.0f ? 1.0f : m * (float)(1.0 / (FP8 ? 448.0 : 127.0)));
    const float inv = 1.0f / s;
#pragma unroll
    for (int j = 0; j < ROW_QUADS; ++j) {
        const uint32_t c = (j * ROW_THREADS + t) * 4;
        if (c < cols) {
            uchar4 o;
            o.x = quantize_one<FP8>(v[j][0], inv);
            o.y = quantize_one<FP8>(v[j][1], inv);
            o.z = quantize_one<FP8>(v[j][2], inv);
            o.w = quantize_one<FP8>(v[j][3], inv);
            *reinterpret_cast<uchar4 *>(qr + c) = o;
        }
    }
    if (t == 0) *scale = s;
}

// dequant_gelu_quantize_i8: the int8 FFN-in's int32 products acc (rows, cols) scaled back, bias
// and erf GELU added as dequant_i32 does, rounded to T, then quantized per row to int8 for FFN-out.
template <typename T>
__device__ void dequant_gelu_quantize_i8(const int32_t *acc, const float *sx, const float *sb, uint8_t *q,
                                         float *scale, uint32_t rows, uint32_t cols) {
    const uint32_t row = blockIdx.x;
    if (row >= rows) return;
    const int32_t *ar = acc + (size_t)row * cols;
    const float s = sx[row];
    auto value4 = [&](uint32_t c, float *v) {
        const int4 a = *reinterpret_cast<const int4 *>(ar + c);
        const float4 w = *reinterpret_cast<const float4 *>(sb + c);
        const float4 b = *reinterpret_cast<const float4 *>(sb + cols + c);
        v[0] = to_f32(from_f32<T>(act<true>((float)a.x * s * w.x + b.x)));
        v[1] = to_f32(from_f32<T>(act<true>((float)a.y * s * w.y + b.y)));
        v[2] = to_f32(from_f32<T>(act<true>((float)a.z * s * w.z + b.z)));
        v[3] = to_f32(from_f32<T>(act<true>((float)a.w * s * w.w + b.w)));
    };
    quantize_row_of<false>(value4, cols, q + (size_t)row * cols, scale + row);
}

// bias_gelu_quantize_e4m3: the FP8 FFN-in's GEMM output x (rows, cols, before its bias) plus bias
// through erf GELU as bias_act does, rounded to T, then quantized per row to E4M3 for FFN-out.
template <typename T>
__device__ void bias_gelu_quantize_e4m3(const T *x, const T *bias, uint8_t *q, float *scale, uint32_t rows,
                                        uint32_t cols) {
    const uint32_t row = blockIdx.x;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols;
    auto value4 = [&](uint32_t c, float *v) {
        alignas(8) T xv[4];
        alignas(8) T bv[4];
        copy_vec<T, 4>(xv, xr + c);
        copy_vec<T, 4>(bv, bias + c);
#pragma unroll
        for (int k = 0; k < 4; ++k) v[k] = to_f32(from_f32<T>(act<true>(to_f32(xv[k]) + to_f32(bv[k]))));
    };
    quantize_row_of<true>(value4, cols, q + (size_t)row * cols, scale + row);
}

#define DEQUANT_GELU_QUANTIZE_I8(NAME, T) extern "C" __global__ void __launch_bounds__(ROW_THREADS) NAME(const int32_t *acc, const float *sx, \
    const float *sb, uint8_t *q, float *scale, uint32_t rows, uint32_t cols) \
    { dequant_gelu_quantize_i8<T>(acc, sx, sb, q, scale, rows, cols); }
#define BIAS_GELU_QUANTIZE_E4M3(NAME, T) extern "C" __global__ void __launch_bounds__(ROW_THREADS) NAME(const T *x, const T *bias, uint8_t *q, \
    float *scale, uint32_t rows, uint32_t cols) { bias_gelu_quantize_e4m3<T>(x, bias, q, scale, rows, cols); }
DEQUANT_GELU_QUANTIZE_I8(dequant_gelu_quantize_i8_f32, float)
DEQUANT_GELU_QUANTIZE_I8(dequant_gelu_quantize_i8_f16, __half)
DEQUANT_GELU_QUANTIZE_I8(dequant_gelu_quantize_i8_bf16, __nv_bfloat16)
BIAS_GELU_QUANTIZE_E4M3(bias_gelu_quantize_e4m3_f16, __half)
BIAS_GELU_QUANTIZE_E4M3(bias_gelu_quantize_e4m3_bf16, __nv_bfloat16)

// add_layer_norm_quantize: the residual + layer norm of fused.cu's add_layer_norm (the same
// ResidualNormRow, so the same values in T), whose output also feeds an 8-bit GEMM: the kernel
// writes it in T (the next norm's residual) and quantizes it per row as quantize_rows_i8 /
// quantize_rows_e4m3 would from those stored values (same scale, same rounding, same bytes), so
// the GEMM's separate quantization pass goes. One warp per row; the normalized values are
// recomputed for the quantization from the row ResidualNormRow holds in registers (the second
// normalize is a few FMAs, not a second read).
template <typename T, int N, bool FP8>
__device__ void add_layer_norm_quantize(const T *x, const T *residual, const T *gamma_beta, T *out, uint8_t *q,
                                        float *scale, uint32_t rows, uint32_t cols, float eps) {
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const ResidualNormRow<T, N, false> norm(x, residual, gamma_beta, row, cols, lane, eps);
    T *o = out + (size_t)row * cols;
    float m = 0.0f;
    bool nan = false;
    norm.each([&](uint32_t c, const T *y) {
        copy_vec<T, N>(o + c, y);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const float f = to_f32(y[k]);
            nan |= isnan(f);
            m = fmaxf(m, fabsf(f));
        }
    });
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, off));
    nan = __any_sync(0xffffffff, nan);
    const float s = nan ? NAN : (m == 0.0f ? 1.0f : m * (float)(1.0 / (FP8 ? 448.0 : 127.0)));
    const float inv = 1.0f / s;
    uint8_t *qr = q + (size_t)row * cols;
    norm.each([&](uint32_t c, const T *y) {
        alignas(8) uint8_t b[N];
#pragma unroll
        for (int k = 0; k < N; ++k) b[k] = quantize_one<FP8>(to_f32(y[k]), inv);
        if constexpr (N == 8) {
            *reinterpret_cast<uint2 *>(qr + c) = *reinterpret_cast<const uint2 *>(b);
        } else if constexpr (N == 4) {
            *reinterpret_cast<uint32_t *>(qr + c) = *reinterpret_cast<const uint32_t *>(b);
        } else {
            qr[c] = b[0];
        }
    });
    if (lane == 0) scale[row] = s;
}

#define ADD_LAYER_NORM_QUANTIZE(NAME, T, N, FP8) extern "C" __global__ void NAME(const T *x, const T *residual, \
    const T *gamma_beta, T *out, uint8_t *q, float *scale, uint32_t rows, uint32_t cols, float eps) \
    { add_layer_norm_quantize<T, N, FP8>(x, residual, gamma_beta, out, q, scale, rows, cols, eps); }
// int8 in every float dtype, E4M3 in f16/bf16 (as the GEMMs that read them); _vec: 16-byte loads.
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_i8_f32, float, 1, false)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_i8_f16, __half, 1, false)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_i8_bf16, __nv_bfloat16, 1, false)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_i8_vec_f32, float, 4, false)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_i8_vec_f16, __half, 8, false)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_i8_vec_bf16, __nv_bfloat16, 8, false)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_e4m3_f16, __half, 1, true)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_e4m3_bf16, __nv_bfloat16, 1, true)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_e4m3_vec_f16, __half, 8, true)
ADD_LAYER_NORM_QUANTIZE(add_layer_norm_quantize_e4m3_vec_bf16, __nv_bfloat16, 8, true)

// add_layer_norm_quantize_h2: add_layer_norm_quantize for f16/bf16 rows of at most PAIR_MAX_COLS
// values, a multiple of 8, 16-byte aligned: the same float output and the same bytes and scales
// (norm_row.cuh), the normalized row computed once and kept in pairs for the quantization, its
// largest magnitude in pairs, the int8 codes without roundf (code_i8). One warp per row; f16 held
// to 40 registers (6 blocks of 8 rows an SM, where 48 gave 5; no spill), bf16's conversions need
// 56 without spilling (4 blocks).
template <typename T, bool FP8>
__device__ void add_layer_norm_quantize_h2(const T *x, const T *residual, const T *gamma_beta, T *out,
                                           uint8_t *q, float *scale, uint32_t rows, uint32_t cols, float eps) {
    using P = Pair<T>;
    using T2 = typename P::T2;
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const PairNormRow<T, false> norm(x, residual, gamma_beta, row, cols, lane, eps);
    T *o = out + (size_t)row * cols;
    T2 y[PAIR_CHUNKS][4];
    T2 mx = P::round(0.0f, 0.0f);
#pragma unroll
    for (int j = 0; j < PAIR_CHUNKS; ++j) {
        if (norm.has(j)) {
            norm.normalize(j, y[j]);
            *reinterpret_cast<uint4 *>(o + (j * 32 + lane) * 8) = *reinterpret_cast<const uint4 *>(y[j]);
#pragma unroll
            for (int k = 0; k < 4; ++k) mx = __hmax2_nan(mx, __habs2(y[j][k]));
        }
    }
    const float2 mf = P::f32(mx);
    bool nan = isnan(mf.x) || isnan(mf.y);
    float m = fmaxf(mf.x, mf.y);
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, off));
    nan = __any_sync(0xffffffff, nan);
    const float s = nan ? NAN : (m == 0.0f ? 1.0f : m * (float)(1.0 / (FP8 ? 448.0 : 127.0)));
    const float inv = 1.0f / s;
    uint8_t *qr = q + (size_t)row * cols;
#pragma unroll
    for (int j = 0; j < PAIR_CHUNKS; ++j) {
        if (norm.has(j)) {
            uint2 word;
            uint32_t *w = reinterpret_cast<uint32_t *>(&word);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const float2 a = P::f32(y[j][2 * h]), b = P::f32(y[j][2 * h + 1]);
                if constexpr (FP8) {
                    auto clamp = [inv](float v) { return fminf(fmaxf(v * inv, -448.0f), 448.0f); };
                    const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(clamp(a.x), clamp(a.y)), __NV_SATFINITE, __NV_E4M3);
                    const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(clamp(b.x), clamp(b.y)), __NV_SATFINITE, __NV_E4M3);
                    w[h] = lo | (hi << 16);
                } else {
                    w[h] = pack4(code_i8(a.x, inv), code_i8(a.y, inv), code_i8(b.x, inv), code_i8(b.y, inv));
                }
            }
            *reinterpret_cast<uint2 *>(qr + (j * 32 + lane) * 8) = word;
        }
    }
    if (lane == 0) scale[row] = s;
}

#define ADD_LAYER_NORM_QUANTIZE_H2(NAME, T, FP8, BLOCKS) extern "C" __global__ void __launch_bounds__(256, BLOCKS) NAME(const T *x, const T *residual, \
    const T *gamma_beta, T *out, uint8_t *q, float *scale, uint32_t rows, uint32_t cols, float eps) \
    { add_layer_norm_quantize_h2<T, FP8>(x, residual, gamma_beta, out, q, scale, rows, cols, eps); }
ADD_LAYER_NORM_QUANTIZE_H2(add_layer_norm_quantize_i8_h2_f16, __half, false, 6)
ADD_LAYER_NORM_QUANTIZE_H2(add_layer_norm_quantize_i8_h2_bf16, __nv_bfloat16, false, 4)
ADD_LAYER_NORM_QUANTIZE_H2(add_layer_norm_quantize_e4m3_h2_f16, __half, true, 6)
ADD_LAYER_NORM_QUANTIZE_H2(add_layer_norm_quantize_e4m3_h2_bf16, __nv_bfloat16, true, 4)
