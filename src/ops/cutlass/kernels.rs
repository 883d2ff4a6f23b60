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
    /// 128 x 96 ping-pong, no clusters: a 768-wide output at 2048 rows is 128 tiles, one wave on
    /// 132 SMs.
    PingPong128x96NoCluster,
    /// 128 x 128 cooperative, no clusters, CUTLASS's stream-K tile scheduler (gemm_streamk.cuh):
    /// the K iterations of all tiles spread evenly over the SMs, partial sums reduced in a
    /// workspace (for GEMMs of fewer tiles than SMs).
    Cooperative128StreamK,
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
            Config::PingPong128x96NoCluster => {
                "128x96 tiles, warp-specialized ping-pong, no clusters"
            }
            Config::Cooperative128StreamK => {
                "128x128 tiles, warp-specialized cooperative, no clusters, stream-K (every tile's K iterations spread evenly over the SMs, partial sums reduced in a workspace in K order)"
            }
        }
    }

    /// Whether the kernel takes a workspace (src/ops/cutlass/workspace.rs holds it).
    pub fn needs_workspace(self) -> bool {
        self == Config::Cooperative128StreamK
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

mod table;
pub use table::INSTANCES;
#[cfg(test)]
use table::{inst, kind};

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
