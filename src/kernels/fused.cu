// The runner's own CUDA kernels, compiled to PTX by build.rs (feature "cuda") and loaded by
// src/model/fused.rs: bias (+ GELU) and mask + softmax.
//
// bias_{act}_{dtype}: out[r, c] = act(x[r, c] + bias[c]) for a contiguous (rows, cols) x, in one
// pass: candle's broadcast add reads the bias through a generic strided index and ran at ~160 GB/s
// on an H100, three times the cost of the GEMM before it; GELU was a second pass. Arithmetic is in
// f32 whatever the storage type, rounded once on the store. Two elements per thread where the
// row width allows, for 32-bit loads of f16/bf16.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <bool GELU> __device__ __forceinline__ float act(float v) {
    // erf GELU, as candle's gelu_erf and PyTorch's default GELU.
    return GELU ? 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)) : v;
}

// Grid: x over columns (256 threads a block), y over rows (grid-stride, rows may exceed 65535).
template <typename T, bool GELU>
__device__ void bias_act(const T *x, const T *bias, T *out, uint32_t rows, uint32_t cols) {
    const uint32_t col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    const float b = to_f32(bias[col]);
    for (uint32_t row = blockIdx.y; row < rows; row += gridDim.y) {
        const size_t i = (size_t)row * cols + col;
        out[i] = from_f32<T>(act<GELU>(to_f32(x[i]) + b));
    }
}

#define BIAS_ACT(NAME, T, GELU)                                                              \
    extern "C" __global__ void NAME(const T *x, const T *bias, T *out, uint32_t rows,       \
                                    uint32_t cols) {                                        \
        bias_act<T, GELU>(x, bias, out, rows, cols);                                         \
    }

BIAS_ACT(bias_none_f32, float, false)
BIAS_ACT(bias_none_f16, __half, false)
BIAS_ACT(bias_none_bf16, __nv_bfloat16, false)
BIAS_ACT(bias_gelu_f32, float, true)
BIAS_ACT(bias_gelu_f16, __half, true)
BIAS_ACT(bias_gelu_bf16, __nv_bfloat16, true)

// masked_softmax_{dtype}: softmax over the last dimension of contiguous attention scores
// (batch, heads, queries, keys) after adding the f32 additive mask (batch, keys), in one pass over
// the scores: candle's broadcast add ran at ~130 GB/s and its softmax was a second pass. One warp
// per row, f32 arithmetic, one rounding on the store. A fully masked row (mask at f32's lowest)
// comes out uniform, never NaN.
template <typename T>
__device__ void masked_softmax(const T *x, const float *mask, T *out, uint32_t rows, uint32_t cols,
                               uint32_t rows_per_batch) {
    const uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const uint32_t lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols;
    const float *m = mask + (size_t)(row / rows_per_batch) * cols;
    T *o = out + (size_t)row * cols;
    float mx = -INFINITY;
    for (uint32_t c = lane; c < cols; c += 32) mx = fmaxf(mx, to_f32(xr[c]) + m[c]);
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, off));
    float sum = 0.0f;
    for (uint32_t c = lane; c < cols; c += 32) sum += expf(to_f32(xr[c]) + m[c] - mx);
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, off);
    const float inv = 1.0f / sum;
    for (uint32_t c = lane; c < cols; c += 32) o[c] = from_f32<T>(expf(to_f32(xr[c]) + m[c] - mx) * inv);
}

#define MASKED_SOFTMAX(NAME, T)                                                               \
    extern "C" __global__ void NAME(const T *x, const float *mask, T *out, uint32_t rows,    \
                                    uint32_t cols, uint32_t rows_per_batch) {               \
        masked_softmax<T>(x, mask, out, rows, cols, rows_per_batch);                          \
    }

MASKED_SOFTMAX(masked_softmax_f32, float)
MASKED_SOFTMAX(masked_softmax_f16, __half)
MASKED_SOFTMAX(masked_softmax_bf16, __nv_bfloat16)
