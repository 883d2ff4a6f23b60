// int8 FFN-in -> int8 codes for FFN-out (static per-column scales), f32 bias + GELU in the fitted
// tanh form (GeluTanhFit: within 0.05 of a code's step); 128x128 ping-pong. See gelu_lean.cuh.
#include "gelu_lean.cuh"
#include "gemm_codes.cuh"
RUNNER_CUTLASS_GEMM_CODES_ACT(i8_codes_gelu_pp128tanh, int8_t, int8_t, float, RoundI8, runner_cutlass::GeluTanhFit, Pp128)
