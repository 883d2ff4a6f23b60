//! The CUTLASS library's kernels (one src/ops/kernels/cutlass/*.cu each): what each computes
//! ([`Kind`]), in which configuration (tile, cluster, schedule), and the rule that picks one per
//! GEMM by its rows and outputs, which the record names.

use candle_core::DType;

use crate::config::GeluEpilogue;
/// The inputs of a CUTLASS GEMM: 8-bit with per-token x per-channel scales, or the float dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    Int8,
    E4m3,
    /// f16 or bf16, the same as the output (bias + GELU only).
    Float,
}

/// What a GEMM computes, whatever configuration runs it: its inputs, output dtype, whether GELU
/// follows, and (E4M3) whether the partial sums stay in the tensor cores' accumulator
/// (`device.fp8_fast_accumulation`) instead of being promoted to f32 along K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub inputs: Inputs,
    pub out: DType,
    pub gelu: bool,
    pub fast_accumulation: bool,
}

impl Kind {
    /// Whether the kernel writes the next GEMM's 8-bit codes (static per-column scales) instead
    /// of the float dtype.
    pub fn writes_codes(&self) -> bool {
        matches!(self.out, DType::U8 | DType::F8E4M3)
    }
}

/// How a kernel is laid out on the GPU (src/ops/kernels/cutlass/gemm.cuh's configurations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    /// 128 x 128 output tiles, ping-pong: each consumer warpgroup on its own tile, one's epilogue
    /// overlapping the other's mainloop; clusters of 2 along M.
    PingPong128,
    /// 128 x 128, cooperative: both warpgroups on one tile, the epilogue by 8 warps after it.
    Cooperative128,
    /// 128 x 256, cooperative: half the activation reads per output of 128 x 128.
    Cooperative128x256,
    /// 64 x 128, ping-pong, clusters of 2 along N: for few rows.
    PingPong64,
    /// 128 x 128, ping-pong, no clusters (no multicast: no CTA waits on its pair's free stage).
    PingPong128NoCluster,
    /// 128 x 64, ping-pong, clusters of 2 along M: twice the tiles, half the epilogue a tile.
    PingPong128x64,
    /// 128 x 128 ping-pong, clusters of 2 along M, with gemm_rows.cuh's epilogue: the column
    /// vectors (scale_w, bias, the codes' steps) loaded in one round trip, wider subtiles.
    PingPong128Rows,
    /// The same without clusters.
    PingPong128RowsNoCluster,
    /// 128 x 64 ping-pong, clusters of 2 along M, gemm_rows.cuh's epilogue: E4M3 promoted along K
    /// holds its two accumulators (64 and 64 a thread) where a 128 x 128 ping-pong tile spills.
    PingPong128x64Rows,
    /// 64 x 128 ping-pong, clusters of 2 along N, gemm_rows.cuh's epilogue.
    PingPong64Rows,
}

impl Config {
    pub fn describe(self) -> &'static str {
        match self {
            Config::PingPong128 => {
                "128x128 tiles, warp-specialized ping-pong, clusters of 2 along M"
            }
            Config::Cooperative128 => {
                "128x128 tiles, warp-specialized cooperative, clusters of 2 along M"
            }
            Config::Cooperative128x256 => {
                "128x256 tiles, warp-specialized cooperative, clusters of 2 along M"
            }
            Config::PingPong64 => "64x128 tiles, warp-specialized ping-pong, clusters of 2 along N",
            Config::PingPong128NoCluster => {
                "128x128 tiles, warp-specialized ping-pong, no clusters"
            }
            Config::PingPong128x64 => {
                "128x64 tiles, warp-specialized ping-pong, clusters of 2 along M"
            }
            Config::PingPong128Rows => {
                "128x128 tiles, warp-specialized ping-pong, clusters of 2 along M, column vectors loaded at once and wide epilogue subtiles"
            }
            Config::PingPong128RowsNoCluster => {
                "128x128 tiles, warp-specialized ping-pong, no clusters, column vectors loaded at once and wide epilogue subtiles"
            }
            Config::PingPong128x64Rows => {
                "128x64 tiles, warp-specialized ping-pong, clusters of 2 along M, column vectors loaded at once"
            }
            Config::PingPong64Rows => {
                "64x128 tiles, warp-specialized ping-pong, clusters of 2 along N, column vectors loaded at once"
            }
        }
    }
}

/// The erf of a GELU epilogue: gemm.cuh's rational approximation (|error| <= 7e-7, one MUFU),
/// the same rational with its constants folded and one rcp.approx (gelu_lean.cuh: 17
/// instructions a value against 22; `device.gelu_epilogue = "lean"`), for int8 codes a fitted
/// tanh form, or CUDA's erff (the first build's, kept to be timed against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erf {
    Fast,
    Lean,
    /// The kernels writing int8 codes only (`device.gelu_epilogue = "lean"`): the tanh form with
    /// constants fitted to erf GELU and MUFU.TANH, within 0.05 of a code's step (gelu_lean.cuh).
    TanhFit,
    /// The fitted tanh form in one epilogue node with the codes rounded to nearest, ties to
    /// even, by adding 1.5 x 2^23 (gemm_codes_lean.cuh; int8 codes only).
    TanhFitRne,
    /// TanhFitRne's form with the GELU in f16 pairs after the f32 dequantization (gemm_rows.cuh's
    /// CodesHalf2Op: 10.6 instructions a value against 13.4 in SASS; codes within one step of the f32
    /// kernels'), and for E4M3 codes CodesE4m3Half2Op (the pairs converted by
    /// cvt.rn.satfinite.e4m3x2.f16x2: ~8.1 a value; codes kernels only).
    TanhFitHalf2,
    Erff,
}

impl Erf {
    /// For the record and the checks' lines.
    pub fn describe(self) -> &'static str {
        match self {
            Erf::Fast => "rational approximation, |erf error| <= 7e-7 (22 instructions a value)",
            Erf::Lean => "rational approximation with folded constants and one rcp.approx, |GELU error| <= 3e-7 |x| (17 instructions a value)",
            Erf::TanhFit => "tanh form fitted to erf GELU (0.5 x (1 + tanh(x (0.79868 + 0.035377 x^2))), tanh.approx), |GELU error| <= 4e-4 |x|, at most 0.05 of an int8 code's step (6 instructions a value; int8 codes only)",
            Erf::TanhFitRne => "tanh form fitted to erf GELU (0.5 x (1 + tanh(x (0.79868 + 0.035377 x^2))), tanh.approx), |GELU error| <= 4e-4 |x|, in one epilogue node with 1/step folded in and the codes rounded to nearest, ties to even, by adding 1.5 x 2^23 (no roundf, no F2I; int8 codes only)",
            Erf::TanhFitHalf2 => "tanh form fitted to erf GELU (0.5 x (1 + tanh(x (0.79868 + 0.035377 x^2)))) evaluated in f16 pairs (HFMA2, tanh.approx.f16x2) on y and y / 2 step from the f32 dequantization, |GELU error| <= 4e-4 |x|; int8 codes rounded to nearest, ties to even, by adding 1536 in f16 (within one step of the f32 kernels'), E4M3 codes by cvt.rn.satfinite.e4m3x2.f16x2 (codes kernels only)",
            Erf::Erff => "CUDA's erff",
        }
    }
}

/// Which GEMMs of its kind a kernel is picked for, by rows (M) and outputs (N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Every GEMM of the kind.
    All,
    /// None: kept only to be timed against by examples/cutlass_check.rs.
    ChecksOnly,
    /// None, and no tactic candidate either: a kernel that has not yet run on a GPU
    /// (`cutlass_check --rows` forces it; the check passed, its rule becomes what it is for).
    Unchecked,
    /// At most [`FEW_ROWS`] rows (vLLM's Hopper FP8 dispatch also picks 64-row tiles there).
    FewRows,
    /// More than [`FEW_ROWS`] rows.
    NotFewRows,
}

pub const FEW_ROWS: usize = 128;

impl Rule {
    pub fn picks(self, rows: usize, _n: usize) -> bool {
        match self {
            Rule::All => true,
            Rule::ChecksOnly | Rule::Unchecked => false,
            Rule::FewRows => rows <= FEW_ROWS,
            Rule::NotFewRows => rows > FEW_ROWS,
        }
    }

    /// Whether a kernel under this rule has passed its GPU check (may be timed or run).
    pub fn checked(self) -> bool {
        self != Rule::Unchecked
    }

    fn describe(self) -> String {
        match self {
            Rule::All | Rule::ChecksOnly | Rule::Unchecked => String::new(),
            Rule::FewRows => format!(" up to {FEW_ROWS} rows"),
            Rule::NotFewRows => format!(" above {FEW_ROWS} rows"),
        }
    }
}

/// One compiled kernel (one src/ops/kernels/cutlass/*.cu): a [`Kind`] in a [`Config`], and which
/// GEMMs of the kind it is picked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    pub name: &'static str,
    pub kind: Kind,
    pub config: Config,
    pub erf: Erf,
    pub rule: Rule,
}

const fn kind(inputs: Inputs, out: DType, gelu: bool, fast_accumulation: bool) -> Kind {
    Kind {
        inputs,
        out,
        gelu,
        fast_accumulation,
    }
}

const fn inst(name: &'static str, kind: Kind, config: Config, erf: Erf, rule: Rule) -> Instance {
    Instance {
        name,
        kind,
        config,
        erf,
        rule,
    }
}

/// Every kernel of the library, one a .cu file (the test below holds the two lists equal).
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

/// Whether a kernel of `kind` has run on a GPU (any rule but [`Rule::Unchecked`]).
pub fn has_checked_kernel(kind: Kind) -> bool {
    any_checked(instances(kind))
}

/// Whether any of `kernels` has passed its GPU check.
pub fn any_checked<'a>(kernels: impl IntoIterator<Item = &'a Instance>) -> bool {
    kernels.into_iter().any(|i| i.rule.checked())
}

/// The kernels that compute `kind`, in the library's order.
pub fn instances(kind: Kind) -> impl Iterator<Item = &'static Instance> {
    INSTANCES.iter().filter(move |i| i.kind == kind)
}

/// The kernel that runs `kind` at `rows` rows and `n` outputs: the one whose rule picks them
/// with the GELU [`set_gelu_epilogue`] asked for (a kind without a lean kernel keeps its
/// standard one), unless [`force`] named another of the same kind.
pub fn choose(kind: Kind, rows: usize, n: usize) -> Option<&'static Instance> {
    forced(kind).or_else(|| choose_by_rule(kind, rows, n, gelu_epilogue()))
}

/// The kernel [`force`] named, if it computes `kind`.
pub fn forced(kind: Kind) -> Option<&'static Instance> {
    let forced = FORCED.load(std::sync::atomic::Ordering::Relaxed);
    INSTANCES.get(forced).filter(|i| i.kind == kind)
}

static FORCED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);
static LEAN_GELU: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `device.gelu_epilogue` for the GEMMs launched from now on (each cell sets it before it loads
/// its model, and cells run one at a time in a process).
pub fn set_gelu_epilogue(g: GeluEpilogue) {
    LEAN_GELU.store(
        g == GeluEpilogue::Lean,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// What [`set_gelu_epilogue`] last set (standard until then).
pub fn gelu_epilogue() -> GeluEpilogue {
    if LEAN_GELU.load(std::sync::atomic::Ordering::Relaxed) {
        GeluEpilogue::Lean
    } else {
        GeluEpilogue::Standard
    }
}

/// Runs `instance` for every GEMM of its kind until called again (`None`: the row rule again).
/// For examples/cutlass_check.rs, which times each configuration on the same shapes; no
/// experiment setting reaches it, so a record's configuration is always the rule's.
pub fn force(instance: Option<&'static Instance>) {
    let index = instance
        .and_then(|i| INSTANCES.iter().position(|j| j == i))
        .unwrap_or(usize::MAX);
    FORCED.store(index, std::sync::atomic::Ordering::Relaxed);
}

/// For the record: which kernel and configuration runs `kind` at which rows (with the GELU
/// [`set_gelu_epilogue`] set), and the GELU's erf.
pub fn describe(kind: Kind) -> String {
    let mut erfs = Vec::new();
    let chosen: Vec<String> = [1, FEW_ROWS + 1]
        .into_iter()
        .filter_map(|rows| choose_by_rule(kind, rows, 0, gelu_epilogue()))
        .fold(Vec::<&Instance>::new(), |mut v, i| {
            if !v.contains(&i) {
                v.push(i);
            }
            v
        })
        .into_iter()
        .map(|i| {
            if !erfs.contains(&i.erf) {
                erfs.push(i.erf);
            }
            format!("{} ({}){}", i.config.describe(), i.name, i.rule.describe())
        })
        .collect();
    let erf = if kind.gelu {
        let e: Vec<&str> = erfs.iter().map(|e| e.describe()).collect();
        format!("; GELU's erf: {}", e.join(", "))
    } else {
        String::new()
    };
    format!("{}{erf}", chosen.join("; "))
}

/// The erf of `kind`'s GELU epilogue as the rule and the GELU setting pick it, for the record's
/// `activation` (at the row counts of an encoder's batches: the kinds with a GELU have one
/// kernel for every row count).
pub fn gelu_erf(kind: Kind) -> &'static str {
    choose_by_rule(kind, FEW_ROWS + 1, 0, gelu_epilogue()).map_or("none", |i| i.erf.describe())
}

/// [`choose`] without [`force`]: what the rule and the GELU setting pick.
fn choose_by_rule(
    kind: Kind,
    rows: usize,
    n: usize,
    gelu: GeluEpilogue,
) -> Option<&'static Instance> {
    let picked = || instances(kind).filter(move |i| i.rule.picks(rows, n));
    // Lean: the fitted tanh form where the output is int8 codes (session 14's f16 pairs, then
    // session 9's rounding), else the folded rational.
    let lean = [Erf::TanhFitHalf2, Erf::TanhFitRne, Erf::TanhFit, Erf::Lean];
    if gelu == GeluEpilogue::Lean {
        if let Some(i) = lean.iter().find_map(|e| picked().find(|i| i.erf == *e)) {
            return Some(i);
        }
    }
    picked().find(|i| !lean.contains(&i.erf))
}
#[cfg(test)]
mod tests;
