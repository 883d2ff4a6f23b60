// The erf GELU of the FFN-in epilogues with fewer instructions a value (issue 31's "GELU epilogue
// 25 us"), and the 128x128x64 cooperative configuration for the float FFN-in, in a header of its
// own so that gemm.cuh's instantiations do not recompile.
//
// Why: at 8192 x 3072 outputs the epilogue runs 25.2 M GELUs, and the H100 issues 128 thread
// instructions a clock per SM (4 schedulers x 32 lanes) whatever the pipe. gemm.cuh's GeluErf
// compiles to 22 SASS instructions a value (FMUL by 1/sqrt 2, FMUL by 0.5, two FMNMX, FMUL, 6 + 4
// FFMA, FMUL, __fdividef's denormal guard FSETP + two predicated FMULs, MUFU.RCP, FMUL, FFMA);
// with the int8 dequantization (I2FP, FMUL, FFMA) and the f16 pack, ~26 a value: 25.2 M x 26 /
// (132 SMs x 128 x ~1.755 GHz) = 22 us of issue, near the measured cost of the GELU epilogue in
// the cooperative kernel, which runs it after the mainloop.
//
// GeluLean evaluates the same rational approximation with the constants folded:
//   t = clamp(x, +-4 sqrt 2), s = t^2,
//   Phi(x) = 0.5 + t P(s) / Q(s),  P(s) = P_erf(s / 2) / (2 sqrt 2),  Q(s) = Q_erf(s / 2),
//   GELU(x) = x Phi(x),
// with gemm.cuh's P_erf / Q_erf (13/8 odd/even minimax) and the reciprocal as one rcp.approx
// (|Q| >= 0.0142 on the whole range, so the denormal guard __fdividef carries is dead code):
// two FMNMX, FMUL, 6 + 4 FFMA, MUFU.RCP, FMUL, FFMA, FMUL = 17 instructions (the SASS: 5
// fewer a value, FMUL 8 -> 4 and no FSETP). Error (all f32 x in
// [-64, 64] at a stride of 101 ulps against the double erf GELU, rcp within 1 ulp either way, on
// the CPU: docs/results/2026-12-06-nvidia-h100-cutlass-lean/erf_lean.c): |GeluLean(x) - GELU(x)|
// <= 3e-7 |x| (measured 2.5e-7; GeluErf: 1.9e-7 |x|), far under an f16 output's half-ulp (2.4e-4 relative). A
// NaN stays NaN (the clamp maps it to a bound, then x * Phi is NaN), as GeluErf.
#pragma once

#include "gemm.cuh"

namespace runner_cutlass {

template <class T> struct GeluLean {
  CUTLASS_DEVICE float operator()(float const &x) const {
    float t = fminf(fmaxf(x, -5.65685424949238f), 5.65685424949238f);
    float s = t * t;
    float p = fmaf(s, -1.505995090e-12f, 3.061199350e-10f);
    p = fmaf(s, p, -4.642651064e-08f);
    p = fmaf(s, p, -2.515756250e-06f);
    p = fmaf(s, p, -6.496460992e-05f);
    p = fmaf(s, p, -5.223043845e-04f);
    p = fmaf(s, p, -5.690807011e-03f);
    float q = fmaf(s, -9.103794696e-07f, -2.667175613e-05f);
    q = fmaf(s, q, -4.207067541e-04f);
    q = fmaf(s, q, -3.686664626e-03f);
    q = fmaf(s, q, -1.426473912e-02f);
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(q));
    return x * fmaf(p * t, r, 0.5f);
  }
};

template <class T, int N> struct GeluLean<cutlass::Array<T, N>> {
  CUTLASS_DEVICE cutlass::Array<T, N> operator()(cutlass::Array<T, N> const &v) const {
    cutlass::Array<T, N> y;
    GeluLean<T> g;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = g(v[i]);
    return y;
  }
};

// For the kernels that write int8 codes only: GELU in the tanh form with constants fitted to the
// erf GELU, 0.5 x (1 + tanh(x (a + b x^2))), and the hardware's tanh.approx (MUFU.TANH):
// |Phi error| <= 1.5e-4 from the form (a, b fitted for the least largest error over [-10, 10];
// PyTorch's tanh constants give 1.8e-4) plus 2.5e-4 from tanh.approx (relative error 2^-11), so
// |GeluTanhFit(x) - GELU(x)| <= 4e-4 |x|. A code's step is the column's largest |value| / 127, so
// the error is at most 4e-4 x 127 = 0.05 of a step: a code moves by one only where the value sits
// within 0.05 step of a rounding boundary, as the f32 reference's own sum order already moves it.
// Six instructions a value (FMUL, FFMA, FMUL, MUFU.TANH, FFMA, FMUL) against GeluErf's 22 (the
// SASS of the codes kernel: 16 fewer a value). Not
// for f16/bf16 outputs: 4e-4 relative is an f16 output's ulp. A NaN stays NaN (tanh of NaN).
template <class T> struct GeluTanhFit {
  CUTLASS_DEVICE float operator()(float const &x) const {
    float u = x * fmaf(x * x, 0.03537741f, 0.79868456f);
    float t;
    asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(u));
    return x * fmaf(0.5f, t, 0.5f);
  }
};

template <class T, int N> struct GeluTanhFit<cutlass::Array<T, N>> {
  CUTLASS_DEVICE cutlass::Array<T, N> operator()(cutlass::Array<T, N> const &v) const {
    cutlass::Array<T, N> y;
    GeluTanhFit<T> g;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = g(v[i]);
    return y;
  }
};

// The float FFN-in in the cooperative schedule (both warpgroups on one 128 x 128 tile, the
// epilogue by 8 warps), for the sweep against its ping-pong (Pp128F16).
using Co128F16 = Config<Shape<_128, _128, _64>, C2x1, k::KernelTmaWarpSpecializedCooperative,
                        e::TmaWarpSpecializedCooperative>;

}  // namespace runner_cutlass
