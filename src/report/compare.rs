//! `runner compare RUN_A RUN_B [--threshold PCT]`: two runs cell by cell. Cells are matched by
//! their id, which hashes the cell's definition (weights, data, protocol, shapes, precision) and
//! never the device, so runs on two machines match. For each matched cell: latency, throughput
//! and energy per inference as ratios B/A of medians, with bootstrap intervals over both runs'
//! windows; a cell regressed when B is slower or spends more than the threshold, beyond that
//! interval; a layers cell regressed when any of its units did. Writes compare.md and
//! compare.html beside B's reports (or into --out).
//!
//! Exit status: 1 when a cell regressed; 3 when nothing was compared (no cell measured in both
//! runs: a gate that compared nothing must not pass); 2 for bad input (a damaged record, an
//! `--out` that is not a folder); else 0. Which cells pair up is `compare_match.rs`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::{context, Environment};
use serde::Serialize;

use super::compare_layers::{compare_layers_cell, LayersCellView};
use super::compare_match::{cell_label, pair, why_nothing, NotCompared};
use crate::analysis::{ratio_text, summarize, CellSummary};
use crate::config::Scope;
use crate::error::{exit, ConfigError};
use crate::results::{write_derived, CellRecord, Manifest, RunDir};
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
    pub differs: bool,
    /// Worse in B by more than the threshold, beyond noise (higher latency or energy, lower
    /// throughput).
    pub regressed: bool,
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
struct CompareView {
    a: RunView,
    b: RunView,
    threshold_pct: f64,
    same_machine: bool,
    cells: Vec<CellView>,
    /// Layers cells unit by unit: a unit that regressed makes its cell regressed.
    layer_cells: Vec<LayersCellView>,
    /// Every cell of either plan not compared, with what is true of it.
    not_compared: Vec<NotCompared>,
    /// Cells compared: whole-model cells plus layers cells (unit by unit).
    compared: usize,
    regressed: usize,
    differing: usize,
    /// Why nothing was compared, when nothing was.
    nothing_compared: Option<String>,
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

fn throughput(s: &CellSummary) -> Vec<f64> {
    let b = s.batch_size as f64;
    s.window_latency_ms.iter().map(|ms| b * 1e3 / ms).collect()
}

/// A metric's verdict; `None` for an estimate that is not a finite ratio (records are checked as
/// they are read, so this is a backstop: "NaNx, within noise" is never a verdict).
pub(super) fn metric(
    name: &str,
    e: Estimate,
    threshold: f64,
    higher_is_worse: bool,
) -> Option<MetricView> {
    let finite = e.0.is_finite() && e.1.is_none_or(|(lo, hi)| lo.is_finite() && hi.is_finite());
    if !finite || e.0 <= 0.0 {
        return None;
    }
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
    Some(MetricView {
        metric: name.to_string(),
        ratio: e.0,
        ci_low: e.1.map(|c| c.0),
        ci_high: e.1.map(|c| c.1),
        text: ratio_text(&e),
        differs,
        regressed,
    })
}

fn compare_cell(a: &CellSummary, b: &CellSummary, label: String, threshold: f64) -> CellView {
    let metrics: Vec<MetricView> = [
        ratio_ci95(&b.window_latency_ms, &a.window_latency_ms)
            .and_then(|e| metric("latency", e, threshold, true)),
        ratio_ci95(&throughput(b), &throughput(a))
            .and_then(|e| metric("throughput", e, threshold, false)),
        ratio_ci95(&b.window_energy_mj, &a.window_energy_mj)
            .and_then(|e| metric("energy", e, threshold, true)),
    ]
    .into_iter()
    .flatten()
    .collect();
    CellView {
        id: a.id.clone(),
        label,
        regressed: metrics.iter().any(|m| m.regressed),
        differs: metrics.iter().any(|m| m.differs),
        metrics,
    }
}

/// Runs the comparison, prints it, writes compare.md/.html; returns the exit code (1 a cell
/// regressed, 3 nothing was compared, else 0).
pub fn run(opts: &CompareOptions) -> Result<u8> {
    anyhow::ensure!(
        opts.threshold_pct.is_finite() && opts.threshold_pct >= 0.0,
        ConfigError::new(format!(
            "--threshold {}: give a percentage of 0 or more",
            opts.threshold_pct
        ))
    );
    let out = out_dir(opts)?;
    let (ma, ra) = open(&opts.a)?;
    let (mb, rb) = open(&opts.b)?;
    let pairing = pair(&ma, &ra, &mb, &rb);
    let mut cells = Vec::new();
    let mut layer_cells = Vec::new();
    let mut not_compared = pairing.not_compared.clone();
    for &(a, b) in &pairing.both {
        let label = cell_label(&a.cell);
        if a.cell.scope == Scope::Model {
            cells.push(compare_cell(
                &summarize(a),
                &summarize(b),
                label,
                opts.threshold_pct,
            ));
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
    }
    let compared = cells.len() + layer_cells.len();
    let (a, b) = (run_view(&opts.a, &ma), run_view(&opts.b, &mb));
    let view = CompareView {
        same_machine: a.host == b.host && a.device == b.device && a.gpu_uuid == b.gpu_uuid,
        not_compared,
        compared,
        regressed: cells.iter().filter(|c| c.regressed).count()
            + layer_cells.iter().filter(|l| l.regressed).count(),
        differing: cells.iter().filter(|c| c.differs).count()
            + layer_cells.iter().filter(|l| l.differs).count(),
        nothing_compared: (compared == 0).then(|| why_nothing(&ma, &mb, &pairing)),
        threshold_pct: opts.threshold_pct,
        cells,
        layer_cells,
        a,
        b,
    };

    let mut env = Environment::new();
    // Escaping is chosen as a template is added: the Markdown mode first.
    super::markdown::register(&mut env);
    env.add_filter("num", super::format_number);
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
    print(&view);
    say!(
        "wrote {} and {}",
        out.join("compare.md").display(),
        out.join("compare.html").display()
    );
    if view.regressed > 0 {
        for l in view.layer_cells.iter().filter(|l| l.regressed) {
            for u in l.units.iter().filter(|u| u.regressed) {
                let worse: Vec<String> = u
                    .metrics
                    .iter()
                    .filter(|m| m.regressed)
                    .map(|m| format!("{} {}", m.metric, m.text))
                    .collect();
                eprintln!(
                    "regressed beyond {} %: cell {} ({}), unit {} ({}): {}",
                    view.threshold_pct,
                    l.id,
                    l.label,
                    u.name,
                    u.method,
                    worse.join(", ")
                );
            }
        }
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
    if let Some(why) = &view.nothing_compared {
        eprintln!(
            "compared nothing: {why}. A comparison that compared no cell is no evidence that nothing regressed (exit {}); compare runs of the same experiment and protocol that both measured some cell",
            exit::COMPARED_NOTHING
        );
        return Ok(exit::COMPARED_NOTHING);
    }
    Ok(exit::OK)
}

/// Where compare.md and compare.html go: `--out` (created when absent), else B's run directory.
fn out_dir(opts: &CompareOptions) -> Result<PathBuf> {
    let Some(out) = &opts.out else {
        return Ok(opts.b.clone());
    };
    if out.exists() && !out.is_dir() {
        return Err(ConfigError::new(format!(
            "--out {}: not a folder; give a folder for compare.md and compare.html (created when absent)",
            out.display()
        ))
        .into());
    }
    std::fs::create_dir_all(out).map_err(|e| {
        ConfigError::new(format!(
            "--out {}: cannot create the folder: {e}",
            out.display()
        ))
    })?;
    Ok(out.clone())
}

fn print(v: &CompareView) {
    say!(
        "A: {} ({}, {} on {})",
        v.a.dir,
        v.a.run_id,
        v.a.device,
        v.a.host
    );
    say!(
        "B: {} ({}, {} on {})",
        v.b.dir,
        v.b.run_id,
        v.b.device,
        v.b.host
    );
    if !v.same_machine {
        say!(
            "A and B ran on different machines: the ratios hold the machines' difference as well as the code's"
        );
    }
    say!("ratios B/A of medians, 95 % bootstrap intervals over both runs' windows:");
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
        say!("  {} {}: {}; {verdict}", c.id, c.label, metrics.join(", "));
    }
    for l in &v.layer_cells {
        let worst = match (&l.worst_unit, l.worst_pct) {
            (Some(u), Some(p)) => format!("largest difference {p:.1} % ({u})"),
            _ => "no unit with a ratio".into(),
        };
        let verdict = if l.regressed {
            format!(
                "REGRESSED beyond {} % in {} unit(s)",
                v.threshold_pct, l.regressed_units
            )
        } else if l.differs {
            "differs beyond noise".into()
        } else {
            "within noise".into()
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
        "{} cells compared: {} differ beyond noise, {} regressed beyond {} %",
        v.compared,
        v.differing,
        v.regressed,
        v.threshold_pct
    );
}
