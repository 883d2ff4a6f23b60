//! `runner compare RUN_A RUN_B [--noise-threshold PCT] [--out DIR]`: two runs cell by cell.
//! Cells are matched by their id, which hashes the cell's definition (weights, data, protocol,
//! shapes, precision, execution settings) and never the device, so runs on two machines match.
//! For each matched cell: the medians of latency and energy per inference in A and in B, and
//! B/A as a Hodges–Lehmann ratio of both runs' windows with its exact 95 % interval; each
//! metric improved, regressed or is within noise as `compare_verdict.rs` judges it (beyond the
//! interval and the noise threshold); a layers cell unit by unit. Writes compare.md and
//! compare.html into --out, by default a folder of its own in the current directory (never into
//! a run's directory: a run holds one run's evidence, and may be committed or still running).
//!
//! Exit status: 1 when a cell regressed; 3 when nothing was compared (no cell measured in both
//! runs: a gate that compared nothing must not pass); 2 for bad input (a damaged record, an
//! `--out` that is not a folder); else 0. Which cells pair up is `compare_match.rs`; whether a
//! pair's records say the same code ran, `compare_implementation.rs`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::{context, Environment};
use serde::Serialize;

use super::compare_energy::{energy_scope, energy_windows};
use super::compare_implementation::{ran_differently, summary_line, RanDifferently};
use super::compare_layers::{compare_layers_cell, LayersCellView};
use super::compare_match::{cell_label, pair, why_nothing, NotCompared};
use super::compare_out::check_out;
pub use super::compare_out::default_out;
use super::compare_verdict::{metric, MetricView, Verdict};
use crate::analysis::{summarize, CellSummary};
use crate::config::Scope;
use crate::error::{exit, ConfigError};
use crate::results::{write_derived, CellRecord, Manifest, RunDir};
use crate::stats::{percentile, ratio_ci95};

pub use super::compare_verdict::DEFAULT_NOISE_THRESHOLD_PCT;

const COMPARE_HTML: &str = include_str!("../../templates/compare.html.j2");
const COMPARE_MD: &str = include_str!("../../templates/compare.md.j2");

pub struct CompareOptions {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Run-to-run noise in %: a change smaller than this is within noise whatever the
    /// within-run interval says (criterion's `noise_threshold`); beyond it and beyond the
    /// interval a metric improved or regressed.
    pub threshold_pct: f64,
    /// Where compare.md and compare.html go (default: [`default_out`]).
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct RunView {
    dir: String,
    run_id: String,
    experiment: String,
    device: String,
    host: String,
    gpu_uuid: Option<String>,
    /// The experiment folder's git commit.
    commit: Option<String>,
    /// The runner that measured it: version and the commit it was built from.
    build: String,
}

#[derive(Debug, Serialize)]
struct CellView {
    id: String,
    label: String,
    /// Medians of each run, to 4 significant digits: latency per batch (ms) and energy per
    /// inference (mJ, gross); `n/a` where the run has none (energy on the CPU).
    a_latency_ms: String,
    b_latency_ms: String,
    a_energy_mj: String,
    b_energy_mj: String,
    /// The CPU's W8A8 cells run the numerics reference: their time is not a speed figure,
    /// though two runs of it may still be compared.
    speed_is_reference: bool,
    /// Spread of each run's per-window latencies (standard deviation / mean), in %.
    a_window_cv_pct: Option<f64>,
    b_window_cv_pct: Option<f64>,
    /// A run's windows of this cell vary by more than the noise threshold: the machine was not
    /// steady (load, clocks), so the threshold does not bound its run-to-run noise, and a
    /// verdict may be the machine's rather than the code's. Said beside the verdict.
    unsteady: bool,
    metrics: Vec<MetricView>,
    verdict: Verdict,
    regressed: bool,
    /// Some metric's interval excludes 1 (beyond within-run noise; not necessarily beyond the
    /// noise threshold).
    differs: bool,
    /// The records' `implementation` keys whose words differ: A and B ran other code.
    ran_differently: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CompareView {
    a: RunView,
    b: RunView,
    threshold_pct: f64,
    /// The threshold as the verdicts' reasons write it (`5`, `2.5`).
    threshold: String,
    same_machine: bool,
    cells: Vec<CellView>,
    /// Layers cells unit by unit: a unit that regressed makes its cell regressed.
    layer_cells: Vec<LayersCellView>,
    /// Every cell of either plan not compared, with what is true of it.
    not_compared: Vec<NotCompared>,
    /// Cells compared: whole-model cells plus layers cells (unit by unit).
    compared: usize,
    regressed: usize,
    improved: usize,
    within_noise: usize,
    /// Cells on unsteady windows (see [`CellView::unsteady`]), regressed ones included.
    unsteady: usize,
    /// Cells on unsteady windows that did not regress: no verdict said.
    not_judged: usize,
    /// Cells with a metric without an interval (fewer than 4 windows a side): judged on the
    /// point against the threshold.
    without_interval: usize,
    /// Within noise, but beyond this pair's within-run interval: what run-to-run noise is.
    within_threshold_only: usize,
    /// Why nothing was compared, when nothing was.
    nothing_compared: Option<String>,
    /// When the runs metered different energy domains: over which their energy is compared.
    energy_scope: Option<String>,
    /// Cells measured in both runs whose records say different code ran, key by key.
    ran_differently: Vec<RanDifferently>,
}

fn run_view(dir: &Path, m: &Manifest) -> RunView {
    RunView {
        dir: dir.display().to_string(),
        run_id: m.run_id.clone(),
        experiment: m.experiment.clone(),
        device: format!("{}: {}", m.device.backend, m.device.name),
        host: m.host.hostname.clone(),
        gpu_uuid: m.gpu.as_ref().map(|g| g.uuid.clone()),
        commit: m.git.as_ref().map(|g| g.commit.chars().take(12).collect()),
        build: m.build(),
    }
}

/// The run's manifest and records (checked against its plan), or a usage error naming what the
/// directory lacks.
fn open(dir: &Path) -> Result<(Manifest, Vec<CellRecord>)> {
    let run = RunDir::open(dir).map_err(|e| ConfigError::new(format!("{e:#}")))?;
    let manifest = run.read_manifest()?;
    let cells = dir.join("cells");
    let has_records = std::fs::read_dir(&cells)
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .unwrap_or(false);
    if !has_records {
        let present: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                let mut v: Vec<String> = d
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default();
        return Err(ConfigError::new(format!(
            "{} has no cell records (cells/*.json); it holds only {}. `runner compare` needs each \
             cell's per-window values for its intervals (summary.csv keeps only medians), so it \
             compares only runs with their cells/ folder",
            dir.display(),
            present.join(", ")
        ))
        .into());
    }
    let records = run.read_records(&manifest)?;
    Ok((manifest, records))
}

/// A median to 4 significant digits (`12.35`, `0.08123`, `1234`), `n/a` for none.
fn significant(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v != 0.0 => {
            let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
            format!("{v:.digits$}")
        }
        Some(0.0) => "0".into(),
        _ => "n/a".into(),
    }
}

fn compare_cell(a: &CellSummary, b: &CellSummary, label: String, threshold: f64) -> CellView {
    let energy = energy_windows(a, b);
    // The medians shown beside the ratio cover the same domains it does.
    let (a_energy, b_energy) = match &energy {
        _ if a.metered == b.metered => (a.energy_per_inference_mj, b.energy_per_inference_mj),
        Some((ea, eb)) => (Some(percentile(ea, 50.0)), Some(percentile(eb, 50.0))),
        None => (None, None),
    };
    let metrics: Vec<MetricView> = [
        ratio_ci95(&b.window_latency_ms, &a.window_latency_ms)
            .and_then(|e| metric("latency", e, threshold, true)),
        energy
            .and_then(|(ea, eb)| ratio_ci95(&eb, &ea))
            .and_then(|e| metric("energy", e, threshold, true)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let cv = |s: &CellSummary| s.window_cv.map(|c| c * 100.0);
    let unsteady = [cv(a), cv(b)].into_iter().flatten().any(|c| c > threshold);
    let verdict = Verdict::cell(&metrics, unsteady);
    CellView {
        a_window_cv_pct: cv(a),
        b_window_cv_pct: cv(b),
        unsteady,
        id: a.id.clone(),
        label,
        a_latency_ms: significant(a.latency_per_loop_ms),
        b_latency_ms: significant(b.latency_per_loop_ms),
        a_energy_mj: significant(a_energy),
        b_energy_mj: significant(b_energy),
        speed_is_reference: a.speed_is_reference || b.speed_is_reference,
        regressed: verdict == Verdict::Regressed,
        differs: metrics.iter().any(|m| m.differs),
        verdict,
        metrics,
        ran_differently: Vec::new(),
    }
}

/// The largest `--noise-threshold`, in %.
const MAX_THRESHOLD_PCT: f64 = 1000.0;

/// Runs the comparison, prints it, writes compare.md/.html; returns the exit code (1 a cell
/// regressed, 3 nothing was compared, else 0).
pub fn run(opts: &CompareOptions) -> Result<u8> {
    // Beyond 1000 % (B 11x A) a gate passes every regression a run can show: no gate at all.
    anyhow::ensure!(
        opts.threshold_pct.is_finite() && (0.0..=MAX_THRESHOLD_PCT).contains(&opts.threshold_pct),
        ConfigError::new(format!(
            "--noise-threshold {}: give a percentage from 0 to {MAX_THRESHOLD_PCT}",
            opts.threshold_pct
        ))
    );
    if let Some(out) = &opts.out {
        check_out(out)?;
    }
    let (ma, ra) = open(&opts.a)?;
    let (mb, rb) = open(&opts.b)?;
    let out = match &opts.out {
        Some(out) => out.clone(),
        None => default_out(&ma.run_id, &mb.run_id),
    };
    check_out(&out)?;
    let pairing = pair(&ma, &ra, &mb, &rb);
    let mut cells = Vec::new();
    let mut layer_cells = Vec::new();
    let mut not_compared = pairing.not_compared.clone();
    let mut differently = Vec::new();
    for &(a, b) in &pairing.both {
        let label = cell_label(&a.cell);
        let ran = ran_differently(a, b, &label);
        if a.cell.scope == Scope::Model {
            let mut cell = compare_cell(&summarize(a), &summarize(b), label, opts.threshold_pct);
            cell.ran_differently = ran.as_ref().map(|r| r.changed.clone()).unwrap_or_default();
            cells.push(cell);
        } else if let Some(l) = compare_layers_cell(a, b, label.clone(), opts.threshold_pct) {
            layer_cells.push(l);
        } else {
            not_compared.push(NotCompared {
                id: a.cell.id.clone(),
                label,
                side: "both",
                why: "measured in both runs, but no layer or prefix in both".into(),
            });
        }
        differently.extend(ran);
    }
    let compared = cells.len() + layer_cells.len();
    let verdicts: Vec<(Verdict, bool)> = cells
        .iter()
        .map(|c| (c.verdict, c.differs))
        .chain(layer_cells.iter().map(|l| (l.verdict, l.differs)))
        .collect();
    let count = |v: Verdict| verdicts.iter().filter(|x| x.0 == v).count();
    let (a, b) = (run_view(&opts.a, &ma), run_view(&opts.b, &mb));
    let view = CompareView {
        same_machine: a.host == b.host && a.device == b.device && a.gpu_uuid == b.gpu_uuid,
        not_compared,
        compared,
        regressed: count(Verdict::Regressed),
        improved: count(Verdict::Improved),
        within_noise: count(Verdict::WithinNoise),
        unsteady: cells.iter().filter(|c| c.unsteady).count(),
        not_judged: count(Verdict::Unsteady),
        without_interval: cells
            .iter()
            .filter(|c| c.metrics.iter().any(|m| !m.has_interval))
            .count(),
        within_threshold_only: verdicts
            .iter()
            .filter(|x| x.0 == Verdict::WithinNoise && x.1)
            .count(),
        nothing_compared: (compared == 0).then(|| why_nothing(&ma, &mb, &pairing)),
        energy_scope: energy_scope(&ma, &mb),
        ran_differently: differently,
        threshold_pct: opts.threshold_pct,
        threshold: opts.threshold_pct.to_string(),
        cells,
        layer_cells,
        a,
        b,
    };

    let mut env = Environment::new();
    // Escaping is chosen as a template is added: the Markdown mode first.
    super::markdown::register(&mut env);
    env.add_filter("num", super::templates::format_number);
    env.add_template("compare.html.j2", COMPARE_HTML)?;
    env.add_template("compare.md.j2", COMPARE_MD)?;
    for (template, file) in [
        ("compare.md.j2", "compare.md"),
        ("compare.html.j2", "compare.html"),
    ] {
        let text = env
            .get_template(template)
            .and_then(|t| t.render(context! { c => &view }))
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("rendering {template}"))?;
        write_derived(&out.join(file), text.as_bytes())?;
    }
    if let Some(scope) = &view.energy_scope {
        say!("energy domains differ: {scope}");
    }
    print(&view);
    say!(
        "wrote {} and {}",
        out.join("compare.md").display(),
        out.join("compare.html").display()
    );
    if view.regressed > 0 {
        tell_regressions(&view);
        return Ok(exit::CELLS_FAILED);
    }
    if let Some(why) = &view.nothing_compared {
        tell!(
            "compared nothing: {why}. A comparison that compared no cell is no evidence that nothing regressed (exit {}); compare runs of the same experiment and protocol that both measured some cell",
            exit::COMPARED_NOTHING
        );
        return Ok(exit::COMPARED_NOTHING);
    }
    Ok(exit::OK)
}

/// Each regression on stderr, one line a cell (or unit), for a CI log.
fn tell_regressions(view: &CompareView) {
    let worse = |metrics: &[MetricView]| -> String {
        metrics
            .iter()
            .filter(|m| m.regressed)
            .map(|m| format!("{} {} ({})", m.metric, m.text, m.relative))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for l in view.layer_cells.iter().filter(|l| l.regressed) {
        for u in l.units.iter().filter(|u| u.regressed) {
            tell!(
                "regressed beyond {} %: cell {} ({}), unit {} ({}): {}",
                view.threshold_pct,
                l.id,
                l.label,
                u.name,
                u.method,
                worse(&u.metrics)
            );
        }
    }
    for c in view.cells.iter().filter(|c| c.regressed) {
        tell!(
            "regressed beyond {} %: cell {} ({}): {}{}",
            view.threshold_pct,
            c.id,
            c.label,
            worse(&c.metrics),
            unsteady_note(c)
        );
    }
}

fn print(v: &CompareView) {
    for (side, r) in [("A", &v.a), ("B", &v.b)] {
        say!(
            "{side}: {} ({}, {} on {}, {})",
            r.dir,
            r.run_id,
            r.device,
            r.host,
            r.build
        );
    }
    if !v.same_machine {
        say!(
            "A and B ran on different machines: the ratios hold the machines' difference as well as the code's"
        );
    }
    say!(
        "B against A (medians; B/A with its 95 % interval; noise threshold {} %):",
        v.threshold_pct
    );
    for c in &v.cells {
        let metrics: Vec<String> = c
            .metrics
            .iter()
            .map(|m| format!("{} {}: {}", m.metric, m.text, m.relative))
            .collect();
        let ran = if c.ran_differently.is_empty() {
            String::new()
        } else {
            format!(" (ran other code: {})", c.ran_differently.join(", "))
        };
        say!(
            "  {} {}: {}; {}{}{ran}",
            c.id,
            c.label,
            metrics.join("; "),
            c.verdict.word(),
            unsteady_note(c)
        );
    }
    for l in &v.layer_cells {
        let worst = match (&l.worst_unit, l.worst_pct) {
            (Some(u), Some(p)) => format!("largest difference {p:.1} % ({u})"),
            _ => "no unit with a ratio".into(),
        };
        let verdict = match l.verdict {
            Verdict::Regressed => format!("regressed in {} unit(s)", l.regressed_units),
            other => other.word().to_string(),
        };
        say!(
            "  {} {}, unit by unit: {} of {} units off by more than {} %; {worst}; {verdict}",
            l.id,
            l.label,
            l.beyond_threshold,
            l.units.len(),
            v.threshold_pct
        );
        for u in l.units.iter().filter(|u| u.beyond_threshold || u.regressed) {
            let metrics: Vec<String> = u
                .metrics
                .iter()
                .map(|m| format!("{} {}", m.metric, m.text))
                .collect();
            say!("    {} ({}): {}", u.name, u.method, metrics.join(", "));
        }
    }
    for o in &v.not_compared {
        say!("  not compared: {} {}: {}", o.id, o.label, o.why);
    }
    say!(
        "{} cells compared: {} improved, {} regressed, {} within noise ({} of them beyond the within-run interval but under the {} % noise threshold){}",
        v.compared,
        v.improved,
        v.regressed,
        v.within_noise,
        v.within_threshold_only,
        v.threshold_pct,
        if v.not_judged > 0 {
            format!(", {} not judged", v.not_judged)
        } else {
            String::new()
        }
    );
    if let Some(line) = summary_line(&v.ran_differently) {
        say!("{line}");
    }
    if v.without_interval > 0 {
        say!(
            "{} cell(s) without an interval (fewer than 4 windows a side in A or B): judged on the point against the {} % noise threshold alone",
            v.without_interval,
            v.threshold_pct
        );
    }
    if v.unsteady > 0 {
        say!(
            "{} cell(s) on unsteady windows (a run's window CV above the {} % noise threshold): the machine was not steady, so only a regression is said of them ({} not judged), and it may be the machine's load rather than the code; compare runs made on a quiet machine",
            v.unsteady,
            v.threshold_pct,
            v.not_judged
        );
    }
}

/// ` (unsteady windows: CV 12.0 % in A, 3.1 % in B)` for a cell on unsteady windows, else "".
fn unsteady_note(c: &CellView) -> String {
    if !c.unsteady {
        return String::new();
    }
    let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1} %"));
    format!(
        " (unsteady windows: CV {} in A, {} in B)",
        pct(c.a_window_cv_pct),
        pct(c.b_window_cv_pct)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_keep_four_significant_digits() {
        assert_eq!(significant(Some(12.3456)), "12.35");
        assert_eq!(significant(Some(0.081234)), "0.08123");
        assert_eq!(significant(Some(1234.4)), "1234");
        assert_eq!(significant(Some(98765.4)), "98765");
        assert_eq!(significant(None), "n/a");
        assert_eq!(significant(Some(f64::NAN)), "n/a");
    }

    #[test]
    fn the_default_folder_names_both_runs_and_is_a_plain_name() {
        assert_eq!(
            default_out("run-1", "run-2"),
            PathBuf::from("compare-run-1-vs-run-2")
        );
        let odd = default_out("../../etc", "<img src=x>\n# x");
        let name = odd.to_str().unwrap();
        assert_eq!(odd.components().count(), 1, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{name}"
        );
        assert_eq!(default_out("", "..").to_str(), Some("compare-run-vs-run"));
    }

    #[test]
    fn the_energy_ratio_covers_the_domains_both_runs_metered() {
        // Totals would say B spends 1.3x; on the GPU board both metered it spends the same.
        let (a, b) = super::super::compare_energy::tests::gpu_only_and_gpu_with_host();
        let view = compare_cell(&summarize(&a), &summarize(&b), "x".into(), 5.0);
        let energy = view.metrics.iter().find(|m| m.metric == "energy").unwrap();
        assert!((energy.ratio - 1.0).abs() < 1e-9 && !energy.regressed);
        assert_eq!(
            (view.a_energy_mj.as_str(), view.b_energy_mj.as_str()),
            ("500.0", "500.0")
        );
    }
}
