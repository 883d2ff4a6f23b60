//! The runner's CUTLASS GEMMs for Hopper (src/ops/kernels/cutlass/: one instantiation a file,
//! compiled by build/cutlass.rs into a static library): 8-bit (int8 or E4M3) GEMMs that apply the
//! per-token and per-channel scales, the bias and optionally erf GELU in their epilogue, writing
//! f16/bf16 (no int32 round trip, no separate dequantization or GELU pass), and the float
//! precisions' bias + erf GELU GEMM. A binary built without CUTLASS's headers, or for another GPU
//! generation, has none (`cfg(has_cutlass_sm90)` unset): [`compiled`] says so and [`BUILD`] why,
//! and a cell that asks for them is refused before it measures.

/// What this binary's CUTLASS library is ("CUTLASS 4.2.0 sm_90a (16 instantiations)"), or
/// "none (why)": for the record.
pub const BUILD: &str = env!("RUNNER_CUTLASS");

/// Whether this binary has the CUTLASS GEMMs.
pub const fn compiled() -> bool {
    cfg!(all(feature = "cuda", has_cutlass_sm90))
}

mod kernels;
pub mod tactics;
#[cfg(all(feature = "cuda", has_cutlass_sm90))]
mod workspace;

pub use kernels::{
    choose, describe, force, gelu_epilogue, gelu_erf, instances, set_gelu_epilogue, Config, Erf,
    Inputs, Instance, Kind, Rule, INSTANCES,
};

/// Why a GEMM of this kind and shape has no CUTLASS kernel, if it has none: TMA wants 16-byte
/// aligned rows of A, B and D, the library holds f16/bf16 outputs only, and FP8 fast
/// accumulation only with f16 output.
pub fn unsupported(kind: Kind, n: usize, k: usize) -> Option<String> {
    let what = || {
        format!(
            "{:?} inputs writing {:?}{}{}",
            kind.inputs,
            kind.out,
            if kind.gelu { " with GELU" } else { "" },
            if kind.fast_accumulation {
                " with FP8 fast accumulation"
            } else {
                ""
            }
        )
    };
    if instances(kind).next().is_none() {
        return Some(format!("no CUTLASS GEMM for {}", what()));
    }
    // A kind whose kernels have not yet run on a GPU is not one the runner can run, unless a
    // check forced one of them.
    if !kernels::has_checked_kernel(kind) && kernels::forced(kind).is_none() {
        return Some(format!(
            "the CUTLASS GEMMs for {} have not yet passed their GPU check (cutlass_check --half2)",
            what()
        ));
    }
    let k_multiple = if kind.inputs == Inputs::Float { 8 } else { 16 };
    if !k.is_multiple_of(k_multiple) || !n.is_multiple_of(8) {
        return Some(format!(
            "the CUTLASS GEMMs need K a multiple of {k_multiple} and N of 8 (K {k}, N {n})"
        ));
    }
    if !compiled() {
        return Some(format!("this binary has no CUTLASS GEMMs: {BUILD}"));
    }
    None
}

/// A GEMM's operands as device addresses: `a` (m, k) row-major, `b` (n, k) row-major (the
/// weight), `d` (m, n) row-major; `scale_x` m and `scale_w` n f32 (8-bit only, else 0); `bias` n
/// values (f32 for int8, the output dtype otherwise; 0 for none); `inv_scale` n f32 (the kernels
/// that write codes: 1 / each output column's static step; else 0).
#[cfg(feature = "cuda")]
pub struct Operands {
    pub a: u64,
    pub b: u64,
    pub scale_x: u64,
    pub scale_w: u64,
    pub bias: u64,
    pub inv_scale: u64,
    pub d: u64,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

#[cfg(all(feature = "cuda", has_cutlass_sm90))]
mod ffi {
    use std::ffi::c_void;

    type Gemm = unsafe extern "C" fn(
        a: *const c_void,
        b: *const c_void,
        scale_x: *const f32,
        scale_w: *const f32,
        bias: *const c_void,
        d: *mut c_void,
        m: i32,
        n: i32,
        k: i32,
        stream: *mut c_void,
    ) -> i32;

    type GemmCodes = unsafe extern "C" fn(
        a: *const c_void,
        b: *const c_void,
        scale_x: *const f32,
        scale_w: *const f32,
        bias: *const c_void,
        inv_scale: *const f32,
        d: *mut c_void,
        m: i32,
        n: i32,
        k: i32,
        stream: *mut c_void,
    ) -> i32;

    /// The kernels that write codes (gemm_codes.cuh): one more operand, `inv_scale`.
    macro_rules! gemm_codes {
        ($($name:ident),*) => {
            extern "C" { $(fn $name(a: *const c_void, b: *const c_void, scale_x: *const f32,
                scale_w: *const f32, bias: *const c_void, inv_scale: *const f32, d: *mut c_void,
                m: i32, n: i32, k: i32, stream: *mut c_void) -> i32;)* }
            pub fn entry_codes(name: &str) -> Option<GemmCodes> {
                match name {
                    $(n if n == &stringify!($name)["runner_cutlass_".len()..] => Some($name as GemmCodes),)*
                    _ => None,
                }
            }
        };
    }
    gemm_codes!(
        runner_cutlass_i8_codes_gelu_co128,
        runner_cutlass_i8_codes_gelu_co128lean,
        runner_cutlass_i8_codes_gelu_pp128lean,
        runner_cutlass_i8_codes_gelu_co128tanh,
        runner_cutlass_i8_codes_gelu_pp128tanh,
        runner_cutlass_i8_codes_gelu_pp128rows,
        runner_cutlass_i8_codes_gelu_pp128h2,
        runner_cutlass_i8_codes_gelu_pp128h2c1,
        runner_cutlass_i8_codes_gelu_pp128rne,
        runner_cutlass_e4m3_codes_f16_gelu_co128,
        runner_cutlass_e4m3_codes_f16_gelu_pp128x64h2,
        runner_cutlass_e4m3_codes_f16_gelu_pp64h2,
        runner_cutlass_e4m3_codes_f16_gelu_co128fast,
        runner_cutlass_e4m3_codes_f16_gelu_pp128fasth2
    );

    type GemmStreamK = unsafe extern "C" fn(
        a: *const c_void,
        b: *const c_void,
        scale_x: *const f32,
        scale_w: *const f32,
        bias: *const c_void,
        d: *mut c_void,
        m: i32,
        n: i32,
        k: i32,
        splits: i32,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: *mut c_void,
    ) -> i32;
    type WorkspaceSize = unsafe extern "C" fn(m: i32, n: i32, k: i32, splits: i32) -> usize;

    /// The stream-K kernels (gemm_streamk.cuh): the split count (0: stream-K) and a workspace,
    /// each with its `_workspace` function, the bytes a shape needs.
    macro_rules! gemm_streamk {
        ($($name:ident: $size:ident),*) => {
            extern "C" { $(fn $name(a: *const c_void, b: *const c_void, scale_x: *const f32,
                scale_w: *const f32, bias: *const c_void, d: *mut c_void, m: i32, n: i32, k: i32,
                splits: i32, workspace: *mut c_void, workspace_bytes: usize,
                stream: *mut c_void) -> i32;
                fn $size(m: i32, n: i32, k: i32, splits: i32) -> usize;)* }
            pub fn entry_streamk(name: &str) -> Option<(GemmStreamK, WorkspaceSize)> {
                match name {
                    $(n if n == &stringify!($name)["runner_cutlass_".len()..] =>
                        Some(($name as GemmStreamK, $size as WorkspaceSize)),)*
                    _ => None,
                }
            }
        };
    }
    gemm_streamk!(runner_cutlass_i8_f16_co128sk: runner_cutlass_i8_f16_co128sk_workspace);

    macro_rules! gemms {
        ($($name:ident),*) => {
            extern "C" { $(fn $name(a: *const c_void, b: *const c_void, scale_x: *const f32,
                scale_w: *const f32, bias: *const c_void, d: *mut c_void, m: i32, n: i32, k: i32,
                stream: *mut c_void) -> i32;)* }
            pub fn entry(name: &str) -> Option<Gemm> {
                match name {
                    $(n if n == &stringify!($name)["runner_cutlass_".len()..] => Some($name as Gemm),)*
                    _ => None,
                }
            }
        };
    }
    gemms!(
        runner_cutlass_i8_f16_pp128,
        runner_cutlass_i8_f16_co256,
        runner_cutlass_i8_f16_co128,
        runner_cutlass_i8_f16_pp128c1,
        runner_cutlass_i8_f16_pp128x64,
        runner_cutlass_i8_f16_pp128x96c1,
        runner_cutlass_i8_f16_pp128rows,
        runner_cutlass_i8_f16_pp128c1rows,
        runner_cutlass_i8_bf16_pp128,
        runner_cutlass_i8_f16_gelu_pp128erff,
        runner_cutlass_i8_f16_gelu_pp128,
        runner_cutlass_i8_f16_gelu_co128,
        runner_cutlass_i8_f16_gelu_co128lean,
        runner_cutlass_i8_f16_gelu_pp128lean,
        runner_cutlass_i8_bf16_gelu_co128,
        runner_cutlass_e4m3_f16_co128,
        runner_cutlass_e4m3_f16_pp128fast,
        runner_cutlass_e4m3_f16_pp64fast,
        runner_cutlass_e4m3_f16_gelu_co128,
        runner_cutlass_e4m3_f16_gelu_co128lean,
        runner_cutlass_e4m3_f16_gelu_pp128fast,
        runner_cutlass_e4m3_bf16_co128,
        runner_cutlass_e4m3_bf16_gelu_co128,
        runner_cutlass_f16_gelu_pp128,
        runner_cutlass_f16_gelu_pp128lean,
        runner_cutlass_f16_gelu_co128lean,
        runner_cutlass_bf16_gelu_pp128
    );
}

/// Launches one GEMM of `kind` on `stream` (candle's, so it is ordered with the rest and captured
/// into a CUDA graph like them), in the configuration [`choose`] picks for its rows.
///
/// # Safety
/// Every address in `ops` must point to a live device buffer of the size stated there, in the
/// element types the instantiation reads and writes, until the stream has run the kernel.
#[cfg(feature = "cuda")]
pub unsafe fn launch(
    kind: Kind,
    ops: &Operands,
    stream: candle_core::cuda_backend::cudarc::driver::sys::CUstream,
) -> candle_core::Result<()> {
    if let Some(why) = unsupported(kind, ops.n, ops.k) {
        candle_core::bail!("{why}");
    }
    let aligned = [ops.a, ops.b, ops.d].iter().all(|p| p % 16 == 0);
    let fits = [ops.m, ops.n, ops.k].iter().all(|&x| x < i32::MAX as usize);
    if !aligned || !fits {
        candle_core::bail!(
            "CUTLASS GEMM {m} x {n} x {k}: operands not 16-byte aligned or dimensions past 2^31",
            m = ops.m,
            n = ops.n,
            k = ops.k
        );
    }
    #[cfg(has_cutlass_sm90)]
    {
        let instance = match select(kind, ops, stream)? {
            Some(i) => i,
            None => {
                candle_core::bail!("no CUTLASS configuration of {kind:?} covers {} rows", ops.m)
            }
        };
        let name = instance.name;
        let status = run_instance(instance, ops, stream)?;
        if status == 0 {
            return Ok(());
        }
        candle_core::bail!(
            "CUTLASS GEMM {name} {m} x {n} x {k}: {why}",
            why = why(status),
            m = ops.m,
            n = ops.n,
            k = ops.k
        )
    }
    #[cfg(not(has_cutlass_sm90))]
    {
        let _ = stream;
        unreachable!("unsupported() refuses every GEMM without the library")
    }
}

/// The kernel a launch runs: one [`force`]d by a check, else under `device.gemm_tactics =
/// "timed"` the shape's timed pick (timed here at its first eager launch), else the row rule's.
#[cfg(all(feature = "cuda", has_cutlass_sm90))]
unsafe fn select(
    kind: Kind,
    ops: &Operands,
    stream: candle_core::cuda_backend::cudarc::driver::sys::CUstream,
) -> candle_core::Result<Option<&'static Instance>> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    if kernels::forced(kind).is_some() || tactics::tactics() == crate::config::GemmTactics::Rule {
        return Ok(choose(kind, ops.m, ops.n));
    }
    if let Some(i) = tactics::lookup(kind, ops.m, ops.n, ops.k) {
        return Ok(Some(i));
    }
    let capturing = result::stream::is_capturing(stream).map_err(candle_core::Error::wrap)?;
    if capturing != sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE {
        // Every graph is captured after an eager warm-up, which timed its shapes: a shape first
        // seen inside a capture is a new caller's, and it must not run a kernel nobody timed.
        candle_core::bail!(
            "device.gemm_tactics = \"timed\": the GEMM {kind:?} {} x {} -> {} was first launched inside a CUDA graph capture, where it cannot be timed",
            ops.m,
            ops.k,
            ops.n
        );
    }
    let run = |i: &'static Instance| match run_instance(i, ops, stream)? {
        0 => Ok(()),
        status => candle_core::bail!("{}", why(status)),
    };
    let pick = tactics::time_candidates(kind, ops, stream, &run)?;
    let picked = pick.picked;
    tactics::remember(pick);
    Ok(Some(picked))
}

/// What a CUTLASS status code means (gemm.cuh's `Status`).
#[cfg(all(feature = "cuda", has_cutlass_sm90))]
fn why(status: i32) -> &'static str {
    match status {
        1 => "CUTLASS cannot implement this shape (can_implement)",
        2 => "the kernel asks for a workspace it was not given",
        3 => "initialization failed",
        _ => "the launch failed",
    }
}

/// Launches `instance` on `ops` and returns its status code (0: launched).
#[cfg(all(feature = "cuda", has_cutlass_sm90))]
unsafe fn run_instance(
    instance: &'static Instance,
    ops: &Operands,
    stream: candle_core::cuda_backend::cudarc::driver::sys::CUstream,
) -> candle_core::Result<i32> {
    use std::ffi::c_void;
    let name = instance.name;
    // The operands every entry point takes, in its argument types.
    let (a, b) = (ops.a as *const c_void, ops.b as *const c_void);
    let (scale_x, scale_w) = (ops.scale_x as *const f32, ops.scale_w as *const f32);
    let (bias, d) = (ops.bias as *const c_void, ops.d as *mut c_void);
    let (m, n, k) = (ops.m as i32, ops.n as i32, ops.k as i32);
    let on = stream as *mut c_void;
    Ok(if instance.config.needs_workspace() {
        let (entry, size) =
            ffi::entry_streamk(name).expect("every stream-K instance has an entry point");
        // 0 splits: stream-K (the scheduler's decomposition; gemm_streamk.cuh).
        let splits = 0;
        let (workspace, bytes) = workspace::at_least(size(m, n, k, splits), stream)?;
        let workspace = workspace as *mut c_void;
        entry(
            a, b, scale_x, scale_w, bias, d, m, n, k, splits, workspace, bytes, on,
        )
    } else if instance.kind.writes_codes() {
        if ops.inv_scale == 0 {
            candle_core::bail!("CUTLASS GEMM {name}: no inverse scales for its codes");
        }
        let entry = ffi::entry_codes(name).expect("every codes instance has an entry point");
        let inv_scale = ops.inv_scale as *const f32;
        entry(a, b, scale_x, scale_w, bias, inv_scale, d, m, n, k, on)
    } else {
        let entry = ffi::entry(name).expect("every instance has an entry point");
        entry(a, b, scale_x, scale_w, bias, d, m, n, k, on)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn kind(inputs: Inputs, out: DType, gelu: bool, fast_accumulation: bool) -> Kind {
        Kind {
            inputs,
            out,
            gelu,
            fast_accumulation,
        }
    }

    #[test]
    fn shapes_the_kernels_cannot_take_are_named() {
        let plain = kind(Inputs::Int8, DType::F16, false, false);
        let why = unsupported(plain, 2, 768).unwrap();
        assert!(why.contains("N of 8"), "{why}");
        let why = unsupported(kind(Inputs::E4m3, DType::F16, true, false), 768, 24).unwrap();
        assert!(why.contains("K a multiple of 16"), "{why}");
        let why = unsupported(kind(Inputs::Int8, DType::F32, false, false), 768, 768).unwrap();
        assert!(why.contains("F32"), "{why}");
        let why = unsupported(kind(Inputs::E4m3, DType::BF16, false, true), 768, 768).unwrap();
        assert!(why.contains("fast accumulation"), "{why}");
        // A supported shape is refused only for want of the library, and then says why.
        match unsupported(kind(Inputs::Int8, DType::F16, true, false), 3072, 768) {
            None => assert!(compiled()),
            Some(why) => assert!(!compiled() && why.contains(BUILD), "{why}"),
        }
    }
}
