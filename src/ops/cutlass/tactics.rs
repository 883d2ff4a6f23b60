//! `device.gemm_tactics = "timed"`: the first eager launch of each GEMM shape a cell runs (the
//! warm-up forward before its graph is captured) times every kernel of the library that computes
//! the same numbers (same kind, same erf; they differ only in tile, cluster and schedule), each as
//! a CUDA graph of [`CALLS`] launches on the layer's own operands, and the fastest runs that shape
//! from then on: TensorRT's tactic selection, for the runner's own GEMMs. The row rule
//! (`kernels.rs`) was set from one sweep on one GPU and cannot see a shape's wave count or
//! epilogue weight; timing sees both. Each cell starts with an empty table and its record names
//! every shape's pick and every candidate's time ([`describe`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::kernels::{choose, instances, Instance, Kind};
use crate::config::GemmTactics;

/// Launches a candidate's graph holds: each replay's time is divided by it.
pub const CALLS: usize = 10;
/// Timed replays a candidate (after two untimed ones); the median is its time.
pub const REPLAYS: usize = 5;

/// One GEMM shape's choice: what the rule would run, what was timed, what runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub kind: Kind,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub rule: &'static Instance,
    /// Every candidate in the library's order: microseconds a launch, or why it cannot run.
    pub times: Vec<(&'static Instance, Result<f64, String>)>,
    pub picked: &'static Instance,
}

static TIMED: AtomicBool = AtomicBool::new(false);
static PICKS: Mutex<Vec<Pick>> = Mutex::new(Vec::new());

/// `device.gemm_tactics` for the GEMMs launched from now on, with an empty table (each cell sets
/// it before it loads its model; cells run one at a time in a process).
pub fn set_tactics(tactics: GemmTactics) {
    TIMED.store(tactics == GemmTactics::Timed, Ordering::Relaxed);
    table().clear();
}

pub fn tactics() -> GemmTactics {
    if TIMED.load(Ordering::Relaxed) {
        GemmTactics::Timed
    } else {
        GemmTactics::Rule
    }
}

fn table() -> std::sync::MutexGuard<'static, Vec<Pick>> {
    // A panic while holding the lock leaves the table as it was: still a valid table.
    PICKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The timed pick for this shape, if it was timed.
pub fn lookup(kind: Kind, m: usize, n: usize, k: usize) -> Option<&'static Instance> {
    table()
        .iter()
        .find(|p| p.kind == kind && (p.m, p.n, p.k) == (m, n, k))
        .map(|p| p.picked)
}

/// Every shape timed since [`set_tactics`], in the order they were first launched.
pub fn picks() -> Vec<Pick> {
    table().clone()
}

// Called by a launch only where the library exists.
#[cfg_attr(not(all(feature = "cuda", has_cutlass_sm90)), allow(dead_code))]
pub(super) fn remember(pick: Pick) {
    let mut t = table();
    if !t
        .iter()
        .any(|p| p.kind == pick.kind && (p.m, p.n, p.k) == (pick.m, pick.n, pick.k))
    {
        t.push(pick);
    }
}

/// The kernels timed for `kind` at `m` rows and `n` outputs: the rule's first, then every other
/// kernel of the kind with the rule's erf (the same numbers), in the library's order, except
/// those that have not yet run on a GPU ([`super::Rule::Unchecked`]).
pub fn candidates(kind: Kind, m: usize, n: usize) -> Vec<&'static Instance> {
    let Some(rule) = choose(kind, m, n) else {
        return Vec::new();
    };
    std::iter::once(rule)
        .chain(instances(kind).filter(|i| i.erf == rule.erf && *i != rule && i.rule.checked()))
        .collect()
}

/// Index of the fastest candidate that ran; a tie keeps the earlier one (the rule's is first).
pub fn fastest(times: &[Result<f64, String>]) -> Option<usize> {
    times
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            t.as_ref()
                .ok()
                .filter(|us| us.is_finite())
                .map(|us| (i, *us))
        })
        .fold(None, |best: Option<(usize, f64)>, (i, us)| match best {
            Some((_, b)) if b <= us => best,
            _ => Some((i, us)),
        })
        .map(|(i, _)| i)
}

/// For the record's `gemm_tactics`: how the picks were made, then per shape the kernel that runs
/// and every candidate's time.
pub fn describe(picks: &[Pick]) -> String {
    let shapes = picks
        .iter()
        .map(|p| {
            let times = p
                .times
                .iter()
                .map(|(i, t)| {
                    let rule = if *i == p.rule { " (rule)" } else { "" };
                    match t {
                        Ok(us) => format!("{}{rule} {us:.1} us", i.name),
                        Err(why) => format!("{}{rule} cannot run: {why}", i.name),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "{:?} -> {:?}{} {} x {} -> {}: {} ({}) [{times}]",
                p.kind.inputs,
                p.kind.out,
                if p.kind.gelu { " + GELU" } else { "" },
                p.m,
                p.k,
                p.n,
                p.picked.name,
                p.picked.config.describe()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "device.gemm_tactics = \"timed\": each GEMM shape's kernels of the same numbers (kind and erf) timed at its first eager launch, a CUDA graph of {CALLS} launches on the layer's own operands, median of {REPLAYS} replays; the fastest runs. Per shape (rows x in -> out): {}",
        if shapes.is_empty() {
            "none timed".to_string()
        } else {
            shapes
        }
    )
}

/// Times every candidate of `kind` on `ops` (an eager launch: `stream` is not capturing) and
/// returns the pick; `run` launches one kernel on a stream. The candidates write `ops.d`; the
/// caller launches the pick afterwards, so the output is the pick's.
///
/// # Safety
/// As [`super::launch`]: every address in `ops` live until the stream has run the kernels.
#[cfg(feature = "cuda")]
#[cfg_attr(not(has_cutlass_sm90), allow(dead_code))]
pub(super) unsafe fn time_candidates(
    kind: Kind,
    ops: &super::Operands,
    stream: candle_core::cuda_backend::cudarc::driver::sys::CUstream,
    run: &dyn Fn(&'static Instance) -> candle_core::Result<()>,
) -> candle_core::Result<Pick> {
    let candidates = candidates(kind, ops.m, ops.n);
    let Some(&rule) = candidates.first() else {
        candle_core::bail!("no CUTLASS configuration of {kind:?} covers {} rows", ops.m);
    };
    let mut times = Vec::new();
    for &c in &candidates {
        // An eager launch first: a kernel that cannot take the shape says so here, not in a graph.
        let time = match run(c) {
            Ok(()) => graph_time_us(stream, &|| run(c)).map_err(|e| format!("timing failed: {e}")),
            Err(e) => Err(e.to_string()),
        };
        times.push(time);
    }
    let Some(best) = fastest(&times) else {
        candle_core::bail!(
            "device.gemm_tactics = \"timed\": no kernel of {kind:?} ran {} x {} -> {}: {}",
            ops.m,
            ops.k,
            ops.n,
            times
                .iter()
                .filter_map(|r| r.as_ref().err().cloned())
                .collect::<Vec<_>>()
                .join("; ")
        );
    };
    Ok(Pick {
        kind,
        m: ops.m,
        n: ops.n,
        k: ops.k,
        rule,
        times: candidates.iter().copied().zip(times).collect(),
        picked: candidates[best],
    })
}

/// Microseconds a call of `run` inside a CUDA graph of [`CALLS`] calls captured on `stream`
/// (thread-local capture, as the forward's own graph), median of [`REPLAYS`] replays timed by
/// events on the stream after two untimed ones.
#[cfg(feature = "cuda")]
#[cfg_attr(not(has_cutlass_sm90), allow(dead_code))]
unsafe fn graph_time_us(
    stream: candle_core::cuda_backend::cudarc::driver::sys::CUstream,
    run: &dyn Fn() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let wrap = candle_core::Error::wrap;
    result::stream::begin_capture(
        stream,
        sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
    )
    .map_err(wrap)?;
    let mut launched = Ok(());
    for _ in 0..CALLS {
        launched = run();
        if launched.is_err() {
            break;
        }
    }
    // The capture ends whatever happened inside it, or the stream stays capturing.
    let graph = result::stream::end_capture(stream).map_err(wrap);
    launched?;
    let graph = graph?;
    if graph.is_null() {
        candle_core::bail!("the capture recorded an empty graph");
    }
    let exec = result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0));
    let timed = exec.map_err(wrap).and_then(|exec| {
        let t = replay_times(stream, exec);
        let _ = result::graph::exec_destroy(exec);
        t
    });
    let _ = result::graph::destroy(graph);
    let mut t = timed?;
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2] / CALLS as f64)
}

#[cfg(feature = "cuda")]
#[cfg_attr(not(has_cutlass_sm90), allow(dead_code))]
unsafe fn replay_times(
    stream: candle_core::cuda_backend::cudarc::driver::sys::CUstream,
    exec: candle_core::cuda_backend::cudarc::driver::sys::CUgraphExec,
) -> candle_core::Result<Vec<f64>> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let wrap = candle_core::Error::wrap;
    let start = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(wrap)?;
    let end = match result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT) {
        Ok(e) => e,
        Err(e) => {
            let _ = result::event::destroy(start);
            return Err(wrap(e));
        }
    };
    let timed = (|| {
        for _ in 0..2 {
            result::graph::launch(exec, stream).map_err(wrap)?;
        }
        let mut t = Vec::with_capacity(REPLAYS);
        for _ in 0..REPLAYS {
            result::event::record(start, stream).map_err(wrap)?;
            result::graph::launch(exec, stream).map_err(wrap)?;
            result::event::record(end, stream).map_err(wrap)?;
            result::event::synchronize(end).map_err(wrap)?;
            t.push(f64::from(result::event::elapsed(start, end).map_err(wrap)?) * 1e3);
        }
        Ok(t)
    })();
    let _ = result::event::destroy(start);
    let _ = result::event::destroy(end);
    timed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cutlass::{Config, Inputs};
    use candle_core::DType;

    fn int8() -> Kind {
        Kind {
            inputs: Inputs::Int8,
            out: DType::F16,
            gelu: false,
            fast_accumulation: false,
        }
    }

    #[test]
    fn candidates_compute_the_same_numbers_and_start_with_the_rule() {
        let c = candidates(int8(), 8192, 2304);
        assert_eq!(c[0], choose(int8(), 8192, 2304).unwrap());
        let names: Vec<&str> = c.iter().map(|i| i.name).collect();
        for name in [
            "i8_f16_co128",
            "i8_f16_pp128c1",
            "i8_f16_pp128x64",
            "i8_f16_co128sk",
        ] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert!(c.iter().all(|i| i.kind == int8() && i.erf == c[0].erf));
        // A GELU kind's candidates keep the rule's erf: the lean and standard ones never mix.
        let gelu = Kind {
            gelu: true,
            ..int8()
        };
        let g = candidates(gelu, 8192, 3072);
        assert!(g.len() > 1 && g.iter().all(|i| i.erf == g[0].erf), "{g:?}");
    }

    #[test]
    fn the_fastest_that_ran_wins_and_a_tie_keeps_the_rule() {
        let ok = |us: f64| Ok::<f64, String>(us);
        assert_eq!(fastest(&[ok(30.0), ok(21.5), ok(25.0)]), Some(1));
        assert_eq!(fastest(&[ok(21.5), ok(21.5)]), Some(0));
        assert_eq!(
            fastest(&[Err("cannot implement".into()), ok(f64::NAN), ok(40.0)]),
            Some(2)
        );
        assert_eq!(fastest(&[Err("no".into())]), None);
        assert_eq!(fastest(&[]), None);
    }

    #[test]
    fn the_record_names_every_shape_its_pick_and_every_time() {
        let c = candidates(int8(), 8192, 768);
        let pick = Pick {
            kind: int8(),
            m: 8192,
            n: 768,
            k: 3072,
            rule: c[0],
            times: vec![
                (c[0], Ok(35.04)),
                (c[1], Ok(29.96)),
                (c[2], Err("CUTLASS cannot implement this shape".into())),
            ],
            picked: c[1],
        };
        let d = describe(&[pick]);
        assert!(d.contains("8192 x 3072 -> 768"), "{d}");
        assert!(d.contains(&format!("{} (rule) 35.0 us", c[0].name)), "{d}");
        assert!(d.contains(&format!("{} 30.0 us", c[1].name)), "{d}");
        assert!(d.contains("cannot run: CUTLASS cannot implement"), "{d}");
        assert!(
            d.contains(&format!(": {} ({})", c[1].name, c[1].config.describe())),
            "{d}"
        );
        assert!(describe(&[]).contains("none timed"));
        assert_ne!(c[1].config, Config::PingPong128);
    }
}
