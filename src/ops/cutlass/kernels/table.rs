//! The library's kernels, one a src/ops/kernels/cutlass/*.cu file: what each computes, in which
//! configuration, with which erf, and which GEMMs its rule picks it for (kernels.rs says how
//! these are read).

use candle_core::DType;

use super::{Config, Erf, Inputs, Instance, Kind, Rule};

pub(super) const fn kind(inputs: Inputs, out: DType, gelu: bool, fast_accumulation: bool) -> Kind {
    Kind {
        inputs,
        out,
        gelu,
        fast_accumulation,
    }
}

pub(super) const fn inst(
    name: &'static str,
    kind: Kind,
    config: Config,
    erf: Erf,
    rule: Rule,
) -> Instance {
    Instance {
        name,
        kind,
        config,
        erf,
        rule,
    }
}

/// Every kernel of the library, one a .cu file (kernels/tests.rs holds the two lists equal).
pub const INSTANCES: &[Instance] = {
    use Config::*;
    use DType::{BF16, F16, F8E4M3, U8};
    use Erf::{Erff, Fast, Lean, TanhFit, TanhFitHalf2, TanhFitRne};
    use Inputs::{E4m3, Float, Int8};
    use Rule::*;
    &[
        inst(
            "i8_f16_pp128",
            kind(Int8, F16, false, false),
            PingPong128,
            Fast,
            All,
        ),
        // 128x256 cooperative was picked for Q/K/V at batch 64 (predicted ~35 us from half the
        // activation reads); the H100 sweep measured it slower than 128x128 ping-pong at every
        // shape (8192 x 768 -> 2304: 51.1 against 43.6 us; docs/results/2026-12-06-nvidia-h100-cutlass/).
        inst(
            "i8_f16_co256",
            kind(Int8, F16, false, false),
            Cooperative128x256,
            Fast,
            ChecksOnly,
        ),
        // Session 8's candidates for `device.gemm_tactics = "timed"` (tactics.rs), which times
        // every kernel of a kind and erf on each shape; the row rule never picks them.
        inst(
            "i8_f16_co128",
            kind(Int8, F16, false, false),
            Cooperative128,
            Fast,
            ChecksOnly,
        ),
        inst(
            "i8_f16_pp128c1",
            kind(Int8, F16, false, false),
            PingPong128NoCluster,
            Fast,
            ChecksOnly,
        ),
        inst(
            "i8_f16_pp128x64",
            kind(Int8, F16, false, false),
            PingPong128x64,
            Fast,
            ChecksOnly,
        ),
        // Session 9's (gemm_rows.cuh): the same bits with the epilogue's column vectors in one
        // round trip and 64 x 64 subtiles; tactic candidates since `cutlass_check --rows` passed
        // on an H100 (session 10: bit-equal to the rule's kernel, often the tactics' pick).
        inst(
            "i8_f16_pp128rows",
            kind(Int8, F16, false, false),
            PingPong128Rows,
            Fast,
            ChecksOnly,
        ),
        inst(
            "i8_f16_pp128c1rows",
            kind(Int8, F16, false, false),
            PingPong128RowsNoCluster,
            Fast,
            ChecksOnly,
        ),
        // Session 17's: attention-out and FFN-out at batch 16 (2048 x 768 outputs) are 96 tiles
        // on 132 SMs, each a whole K loop (H200 profile: 8.0 and 13.5 us against 1.2 and 4.9 us
        // floors); stream-K spreads the 96 x K/128 iterations over every SM, predicted ~0.73 of
        // the tile time plus the reduction. Measured on an H100 (`cutlass_check --tactics`, 0
        // failures): slower than the data-parallel kernels at every encoder shape (FFN-out b16
        // 24.0 against 18.5 us: the workspace memset node and the fixup), fastest only at few
        // tiles with a long K (Llama's down projection at 16 rows). A tactic candidate.
        inst(
            "i8_f16_co128sk",
            kind(Int8, F16, false, false),
            Cooperative128StreamK,
            Fast,
            ChecksOnly,
        ),
        // Session 17's other answer to the 96 tiles: 128 x 96 tiles, 128 of them at 2048 x 768,
        // one wave of 3/4 of the work each, no reduction. Forced in `cutlass_check --tactics` on
        // an H100: bit-equal to the rule's kernel at every shape, NaN rows, and the fastest at
        // b16's attention-out (8.8 against 9.2 us) and FFN-out (16.8 against 18.5), where stream-K
        // took 10.0 and 24.0. A candidate since session 18's `cutlass_check --tactics` on an H100
        // passed with it among the candidates (the models' graph replay = eager, 0 failures).
        inst(
            "i8_f16_pp128x96c1",
            kind(Int8, F16, false, false),
            PingPong128x96NoCluster,
            Fast,
            ChecksOnly,
        ),
        inst(
            "i8_bf16_pp128",
            kind(Int8, BF16, false, false),
            PingPong128,
            Fast,
            All,
        ),
        inst(
            "i8_f16_gelu_pp128erff",
            kind(Int8, F16, true, false),
            PingPong128,
            Erff,
            ChecksOnly,
        ),
        inst(
            "i8_f16_gelu_pp128",
            kind(Int8, F16, true, false),
            PingPong128,
            Fast,
            ChecksOnly,
        ),
        inst(
            "i8_f16_gelu_co128",
            kind(Int8, F16, true, false),
            Cooperative128,
            Fast,
            All,
        ),
        inst(
            "i8_f16_gelu_co128lean",
            kind(Int8, F16, true, false),
            Cooperative128,
            Lean,
            All,
        ),
        inst(
            "i8_f16_gelu_pp128lean",
            kind(Int8, F16, true, false),
            PingPong128,
            Lean,
            ChecksOnly,
        ),
        inst(
            "i8_bf16_gelu_co128",
            kind(Int8, BF16, true, false),
            Cooperative128,
            Fast,
            All,
        ),
        inst(
            "e4m3_f16_co128",
            kind(E4m3, F16, false, false),
            Cooperative128,
            Fast,
            All,
        ),
        inst(
            "e4m3_f16_pp128fast",
            kind(E4m3, F16, false, true),
            PingPong128,
            Fast,
            NotFewRows,
        ),
        inst(
            "e4m3_f16_pp64fast",
            kind(E4m3, F16, false, true),
            PingPong64,
            Fast,
            FewRows,
        ),
        inst(
            "e4m3_f16_gelu_co128",
            kind(E4m3, F16, true, false),
            Cooperative128,
            Fast,
            All,
        ),
        inst(
            "e4m3_f16_gelu_co128lean",
            kind(E4m3, F16, true, false),
            Cooperative128,
            Lean,
            All,
        ),
        inst(
            "e4m3_f16_gelu_pp128fast",
            kind(E4m3, F16, true, true),
            PingPong128,
            Fast,
            All,
        ),
        inst(
            "e4m3_bf16_co128",
            kind(E4m3, BF16, false, false),
            Cooperative128,
            Fast,
            All,
        ),
        inst(
            "e4m3_bf16_gelu_co128",
            kind(E4m3, BF16, true, false),
            Cooperative128,
            Fast,
            All,
        ),
        // FFN-in writing FFN-out's codes with static per-column scales
        // (device.ffn_activation_scales = "static"; gemm_codes.cuh): the output "dtype" is the
        // codes' (U8 for int8 two's complement, F8E4M3), f32 (int8) or f16 (E4M3) bias.
        inst(
            "i8_codes_gelu_co128",
            kind(Int8, U8, true, false),
            Cooperative128,
            Fast,
            All,
        ),
        inst(
            "i8_codes_gelu_co128lean",
            kind(Int8, U8, true, false),
            Cooperative128,
            Lean,
            All,
        ),
        inst(
            "i8_codes_gelu_pp128lean",
            kind(Int8, U8, true, false),
            PingPong128,
            Lean,
            ChecksOnly,
        ),
        inst(
            "i8_codes_gelu_co128tanh",
            kind(Int8, U8, true, false),
            Cooperative128,
            TanhFit,
            All,
        ),
        inst(
            "i8_codes_gelu_pp128tanh",
            kind(Int8, U8, true, false),
            PingPong128,
            TanhFit,
            ChecksOnly,
        ),
        // Session 9: the fitted tanh in one node with the codes rounded by a constant (ties to
        // even; gemm_codes_lean.cuh) and gemm_rows.cuh's epilogue (the three column vectors in
        // one round trip, 64 x 128 subtiles): the lean setting's codes kernel, with the node
        // alone in CUTLASS's epilogue (three row broadcasts, 64 x 64 subtiles) as a tactic
        // candidate beside it. `cutlass_check --rows` passed on an H100 (session 10: within one
        // step of the standard kernel, the static FFN against the CPU, NaN rows, graph = eager;
        // 8192 x 768 -> 3072 in 56.4 us against co128tanh's 70.4 standalone).
        inst(
            "i8_codes_gelu_pp128rows",
            kind(Int8, U8, true, false),
            PingPong128Rows,
            TanhFitRne,
            All,
        ),
        // Session 14: the lean rule's codes kernel's epilogue with the GELU in f16 pairs, after
        // session 9's profile of that epilogue (issue-bound, one warp a scheduler, 13.3
        // instructions a value). `cutlass_check --half2` passed on an H100 in session 15 (codes
        // within one step of the standard kernel, the f16 range, the static FFN against the CPU,
        // NaN rows, graph = eager): the lean rule's pick (42.3 against 44.2 us at 8192 rows in
        // the tactics' timing), its no-cluster form a tactic candidate.
        inst(
            "i8_codes_gelu_pp128h2",
            kind(Int8, U8, true, false),
            PingPong128Rows,
            TanhFitHalf2,
            All,
        ),
        inst(
            "i8_codes_gelu_pp128h2c1",
            kind(Int8, U8, true, false),
            PingPong128RowsNoCluster,
            TanhFitHalf2,
            ChecksOnly,
        ),
        inst(
            "i8_codes_gelu_pp128rne",
            kind(Int8, U8, true, false),
            PingPong128,
            TanhFitRne,
            ChecksOnly,
        ),
        inst(
            "e4m3_codes_f16_gelu_co128",
            kind(E4m3, F8E4M3, true, false),
            Cooperative128,
            Fast,
            All,
        ),
        // Session 15: the int8 lean kernel's design for E4M3 codes (fp8-fp16's FFN-in ran only
        // the cooperative kernel with the f32 erf), on the two tiles a promoted E4M3 accumulator
        // fits in a ping-pong warpgroup. `cutlass_check --half2` passed on an H100 (within one
        // E4M3 step + the fitted tanh's error of the standard kernel, static FFN vs CPU, NaN row,
        // graph = eager); in the tactics' timing 61 us at 8192 rows and 18.5 at 2048 (standalone
        // 72.5 against co128's 89.9): 128x64 the lean rule's pick, 64x128 a tactic candidate.
        inst(
            "e4m3_codes_f16_gelu_pp128x64h2",
            kind(E4m3, F8E4M3, true, false),
            PingPong128x64Rows,
            TanhFitHalf2,
            All,
        ),
        inst(
            "e4m3_codes_f16_gelu_pp64h2",
            kind(E4m3, F8E4M3, true, false),
            PingPong64Rows,
            TanhFitHalf2,
            ChecksOnly,
        ),
        // FFN-in's codes with FP8 fast accumulation (no promotion along K: session 15 found the
        // promotion's pipeline drain behind every E4M3 GEMM's deficit against int8), so that
        // fp8-fp16 with device.fp8_fast_accumulation keeps the static FFN path. Written in
        // session 15 without a GPU (Rule::Unchecked), checked in session 16 on an H100
        // (`cutlass_check --half2`, 0 failures), then given the rules they were written for.
        inst(
            "e4m3_codes_f16_gelu_co128fast",
            kind(E4m3, F8E4M3, true, true),
            Cooperative128,
            Fast,
            All,
        ),
        inst(
            "e4m3_codes_f16_gelu_pp128fasth2",
            kind(E4m3, F8E4M3, true, true),
            PingPong128Rows,
            TanhFitHalf2,
            All,
        ),
        inst(
            "f16_gelu_pp128",
            kind(Float, F16, true, false),
            PingPong128,
            Fast,
            All,
        ),
        inst(
            "f16_gelu_pp128lean",
            kind(Float, F16, true, false),
            PingPong128,
            Lean,
            All,
        ),
        inst(
            "f16_gelu_co128lean",
            kind(Float, F16, true, false),
            Cooperative128,
            Lean,
            ChecksOnly,
        ),
        inst(
            "bf16_gelu_pp128",
            kind(Float, BF16, true, false),
            PingPong128,
            Fast,
            All,
        ),
    ]
};
