// What the runner's kernel files share (src/kernels/fused.cu, src/kernels/eight_bit.cu):
// conversions between the storage types and f32, vector copies, erf GELU, loop and warp helpers.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// N consecutive values; one 16- or 8-byte transaction when N values are that wide (the launcher
// checks alignment).
template <typename T, int N> __device__ __forceinline__ void copy_vec(T *dst, const T *src) {
    if constexpr (N * sizeof(T) == 16) {
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    } else if constexpr (N * sizeof(T) == 8) {
        *reinterpret_cast<uint2 *>(dst) = *reinterpret_cast<const uint2 *>(src);
    } else {
#pragma unroll
        for (int k = 0; k < N; ++k) dst[k] = src[k];
    }
}

template <bool GELU> __device__ __forceinline__ float act(float v) {
    // erf GELU, as candle's gelu_erf and PyTorch's default GELU.
    return GELU ? 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)) : v;
}

#define GRID_STRIDE(i, total) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (size_t)gridDim.x * blockDim.x)

// One warp's sum, broadcast to every lane.
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
    return v;
}

