//! `runner compare RUN_A RUN_B [--threshold PCT]`: two runs cell by cell. Cells are matched by
//! their id, which hashes the cell's definition (weights, data, protocol, shapes, precision) and
//! never the device, so runs on two machines match. For each matched cell: latency, throughput
//! and energy per inference as ratios B/A of medians, with bootstrap intervals over both runs'
//! windows; a cell regressed when B is slower or spends more than the threshold, beyond that
//! interval. Writes compare.md and compare.html beside B's reports (or into --out).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::{context, Environment};
use serde::Serialize;

use super::compare_layers::{compare_layers_cell, LayersCellView};
use crate::analysis::{ratio_text, summarize_all, CellSummary};
use crate::error::{exit, ConfigError};
use crate::results::{write_derived, CellRecord, CellStatus, Manifest, RunDir};
use crate::stats::{ratio_ci95, Estimate};

const COMPARE_HTML: &str = include_str!("../../templates/compare.html.j2");
const COMPARE_MD: &str = include_str!("../../templates/compare.md.j2");

pub struct CompareOptions {
    pub a: PathBuf,
    pub b: PathBuf,
    /// A cell regressed when B/A exceeds 1 + threshold/100 (latency or energy), beyond noise.
    pub threshold_pct: f64,
    /// Where compare.md and compare.html go (default: B's run directory).
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
    commit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct MetricView {
    /// `latency`, `throughput`, `energy`.
    pub metric: String,
    pub ratio: f64,
    ci_low: Option<f64>,
    ci_high: Option<f64>,
    pub text: String,
    /// The interval excludes 1 (or, with no interval, the point is off 1 by the threshold).
    differs: bool,
    /// Worse in B by more than the threshold, beyond noise (higher latency or energy, lower
    /// throughput).
    regressed: bool,
}

#[derive(Debug, Serialize)]
struct CellView {
    id: String,
    label: String,
    metrics: Vec<MetricView>,
    regressed: bool,
    differs: bool,
}

#[derive(Debug, Serialize)]
struct OneSide {
    id: String,
    label: String,
    why: String,
}

#[derive(Debug, Serialize)]
struct CompareView {
    a: RunView,
    b: RunView,
    threshold_pct: f64,
    same_machine: bool,
    cells: Vec<CellView>,
    /// Layers cells unit by unit (informational: the exit status is about cells).
    layer_cells: Vec<LayersCellView>,
    only_a: Vec<OneSide>,
    only_b: Vec<OneSide>,
    regressed: usize,
    differing: usize,
}

fn label(s: &CellSummary) -> String {
    format!(
        "{} {} b{} seq {}{}",
        s.model,
        s.precision,
        s.batch_size,
        s.seq_len,
        if s.scope == "model" { "" } else { " (layers)" }
    )
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
    }
}

/// The run's records and their summaries, or a usage error naming what the directory lacks.
fn open(dir: &Path) -> Result<(Manifest, Vec<CellRecord>, Vec<CellSummary>)> {
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
    let records = run.read_records(&manifest.plan)?;
    let summaries = summarize_all(&records, manifest.config.report.baseline);
    Ok((manifest, records, summaries))
}

fn throughput(s: &CellSummary) -> Vec<f64> {
    let b = s.batch_size as f64;
    s.window_latency_ms.iter().map(|ms| b * 1e3 / ms).collect()
}

pub(super) fn metric(name: &str, e: Estimate, threshold: f64, higher_is_worse: bool) -> MetricView {
    let limit = 1.0 + threshold / 100.0;
    let (differs, regressed) = match e.1 {
        Some((lo, hi)) => {
            let differs = lo > 1.0 || hi < 1.0;
            let regressed = if higher_is_worse {
                lo > 1.0 && e.0 > limit
            } else {
                hi < 1.0 && e.0 < 1.0 / limit
            };
            (differs, regressed)
        }
        // No interval (fewer than 3 windows a side): judged on the point alone.
        None => {
            let off = e.0 > limit || e.0 < 1.0 / limit;
            let worse = if higher_is_worse {
                e.0 > limit
            } else {
                e.0 < 1.0 / limit
            };
            (off, worse)
        }
    };
    MetricView {
        metric: name.to_string(),
        ratio: e.0,
        ci_low: e.1.map(|c| c.0),
        ci_high: e.1.map(|c| c.1),
        text: ratio_text(&e),
        differs,
        regressed,
    }
}

fn compare_cell(a: &CellSummary, b: &CellSummary, threshold: f64) -> CellView {
    let mut metrics = Vec::new();
    if let Some(e) = ratio_ci95(&b.window_latency_ms, &a.window_latency_ms) {
        metrics.push(metric("latency", e, threshold, true));
    }
    if let Some(e) = ratio_ci95(&throughput(b), &throughput(a)) {
        metrics.push(metric("throughput", e, threshold, false));
    }
    if let Some(e) = ratio_ci95(&b.window_energy_mj, &a.window_energy_mj) {
        metrics.push(metric("energy", e, threshold, true));
    }
    CellView {
        id: a.id.clone(),
        label: label(a),
        regressed: metrics.iter().any(|m| m.regressed),
        differs: metrics.iter().any(|m| m.differs),
        metrics,
    }
}

fn measured(s: &CellSummary) -> bool {
    s.status == CellStatus::Ok && !s.window_latency_ms.is_empty()
}

/// Measured in a way the comparison can use: a model cell with windows, or a layers cell (its
/// windows are per unit, compared unit by unit).
fn comparable(s: &CellSummary) -> bool {
    measured(s) || (s.status == CellStatus::Ok && s.scope != "model")
}

fn one_side(mine: &[CellSummary], theirs: &[CellSummary], other: &str) -> Vec<OneSide> {
    mine.iter()
        .filter_map(|s| {
            let why = match theirs.iter().find(|t| t.id == s.id) {
                None => format!("no cell with this definition in {other}"),
                Some(t) if !comparable(t) => format!("{} in {other}", t.status_word()),
                Some(_) if !comparable(s) => format!("{} here", s.status_word()),
                Some(_) => return None,
            };
            Some(OneSide {
                id: s.id.clone(),
                label: label(s),
                why,
            })
        })
        .collect()
}

trait StatusWord {
    fn status_word(&self) -> String;
}

impl StatusWord for CellSummary {
    fn status_word(&self) -> String {
        match self.status {
            CellStatus::Ok => "measured without windows".into(),
            CellStatus::Skipped => "skipped".into(),
            CellStatus::Failed => "failed".into(),
        }
    }
}

/// Runs the comparison, prints it, writes compare.md/.html; exit 1 when a cell regressed.
pub fn run(opts: &CompareOptions) -> Result<u8> {
    anyhow::ensure!(
        opts.threshold_pct.is_finite() && opts.threshold_pct >= 0.0,
        ConfigError::new(format!(
            "--threshold {}: give a percentage of 0 or more",
            opts.threshold_pct
        ))
    );
    let (ma, ra, sa) = open(&opts.a)?;
    let (mb, rb, sb) = open(&opts.b)?;
    let cells: Vec<CellView> = sa
        .iter()
        .filter(|a| measured(a))
        .filter_map(|a| {
            let b = sb.iter().find(|b| b.id == a.id && measured(b))?;
            Some(compare_cell(a, b, opts.threshold_pct))
        })
        .collect();
    let layer_cells: Vec<LayersCellView> = ra
        .iter()
        .filter_map(|a| {
            let b = rb.iter().find(|b| b.cell.id == a.cell.id)?;
            let s = sa.iter().find(|s| s.id == a.cell.id)?;
            compare_layers_cell(a, b, label(s), opts.threshold_pct)
        })
        .collect();
    let (a, b) = (run_view(&opts.a, &ma), run_view(&opts.b, &mb));
    let view = CompareView {
        same_machine: a.host == b.host && a.device == b.device && a.gpu_uuid == b.gpu_uuid,
        only_a: one_side(&sa, &sb, "B"),
        only_b: one_side(&sb, &sa, "A"),
        regressed: cells.iter().filter(|c| c.regressed).count(),
        differing: cells.iter().filter(|c| c.differs).count(),
        threshold_pct: opts.threshold_pct,
        cells,
        layer_cells,
        a,
        b,
    };

    let mut env = Environment::new();
    env.add_template("compare.html.j2", COMPARE_HTML)?;
    env.add_template("compare.md.j2", COMPARE_MD)?;
    env.add_filter("num", super::format_number);
    let out = opts.out.clone().unwrap_or_else(|| opts.b.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
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
    print(&view);
    println!(
        "wrote {} and {}",
        out.join("compare.md").display(),
        out.join("compare.html").display()
    );
    if view.regressed > 0 {
        for c in view.cells.iter().filter(|c| c.regressed) {
            let worse: Vec<String> = c
                .metrics
                .iter()
                .filter(|m| m.regressed)
                .map(|m| format!("{} {}", m.metric, m.text))
                .collect();
            eprintln!(
                "regressed beyond {} %: cell {} ({}): {}",
                view.threshold_pct,
                c.id,
                c.label,
                worse.join(", ")
            );
        }
        return Ok(exit::CELLS_FAILED);
    }
    Ok(exit::OK)
}

fn print(v: &CompareView) {
    println!(
        "A: {} ({}, {} on {})",
        v.a.dir, v.a.run_id, v.a.device, v.a.host
    );
    println!(
        "B: {} ({}, {} on {})",
        v.b.dir, v.b.run_id, v.b.device, v.b.host
    );
    if !v.same_machine {
        println!(
            "A and B ran on different machines: the ratios hold the machines' difference as well as the code's"
        );
    }
    println!("ratios B/A of medians, 95 % bootstrap intervals over both runs' windows:");
    for c in &v.cells {
        let verdict = if c.regressed {
            format!("REGRESSED beyond {} %", v.threshold_pct)
        } else if c.differs {
            "differs beyond noise".into()
        } else {
            "within noise".into()
        };
        let metrics: Vec<String> = c
            .metrics
            .iter()
            .map(|m| format!("{} {}", m.metric, m.text))
            .collect();
        println!("  {} {}: {}; {verdict}", c.id, c.label, metrics.join(", "));
    }
    for l in &v.layer_cells {
        let worst = match (&l.worst_unit, l.worst_pct) {
            (Some(u), Some(p)) => format!("largest difference {p:.1} % ({u})"),
            _ => "no unit with a ratio".into(),
        };
        println!(
            "  {} {}, unit by unit: {} of {} units off by more than {} %; {worst}",
            l.id,
            l.label,
            l.beyond_threshold,
            l.units.len(),
            v.threshold_pct
        );
        for u in l.units.iter().filter(|u| u.beyond_threshold) {
            let metrics: Vec<String> = u
                .metrics
                .iter()
                .map(|m| format!("{} {}", m.metric, m.text))
                .collect();
            println!("    {} ({}): {}", u.name, u.method, metrics.join(", "));
        }
    }
    for (side, list) in [("A", &v.only_a), ("B", &v.only_b)] {
        for o in list.iter() {
            println!("  only in {side}: {} {}: {}", o.id, o.label, o.why);
        }
    }
    println!(
        "{} cells compared: {} differ beyond noise, {} regressed beyond {} %",
        v.cells.len(),
        v.differing,
        v.regressed,
        v.threshold_pct
    );
}
