//! Reports: summary.csv, report.md (+ SVG charts beside it) and a self-contained report.html,
//! rendered from the run directory alone, so `runner report DIR` reproduces them byte for byte.
//!
//! Templates are minijinja files users may edit without recompiling: `--templates DIR`, else
//! `./templates` when it holds them, else the copies built into the binary (`templates.rs`).

pub mod charts;
pub mod compare;
mod compare_energy;
mod compare_implementation;
mod compare_layers;
mod compare_match;
mod compare_out;
mod compare_verdict;
mod fidelity;
mod first_screen;
mod flags;
mod layer_units;
pub mod markdown;
mod quantize_first;
mod tables;
mod templates;
mod views;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::{context, Value};
use serde::Serialize;

use crate::analysis::{
    axis_title, findings, layer_summaries, quantized_comparisons, summarize_all, CellSummary,
    Findings, Labels, LayerSummary, QuantizedComparison,
};
use crate::matrix::Cell;
use crate::results::{write_derived, CellRecord, CellStatus, Manifest, RunDir};
pub use tables::{per_layer_columns, summary_columns};
use tables::{per_layer_csv_bytes, summary_csv_bytes};
pub use templates::{TemplateSource, HTML_TEMPLATE, MD_TEMPLATE};
use views::{
    executed_views, implementation_parts, implementation_views, quantized_slower_why,
    tf32_statement, tradeoff_views, worker_views, ExecutedView, ImplementationView, TradeoffView,
    WorkerView,
};

/// What a report shows; also the context handed to the templates.
#[derive(Debug, Serialize)]
struct ReportContext<'a> {
    manifest: &'a Manifest,
    config_toml: String,
    cells: &'a [CellSummary],
    /// Decoder cells, for the report's first screen (energy per token, prefill and decode).
    decoders: Vec<&'a CellSummary>,
    decoder_charts: Vec<ChartRef>,
    /// Planned cells with no record yet (a partial run).
    missing: Vec<MissingCell>,
    partial: bool,
    /// For a partial run: the command that completes it.
    resume_command: String,
    counts: Counts,
    energy_measured: bool,
    /// Why energy was not measured: the records' sensor note (each worker's own), else the
    /// manifest's.
    energy_note: String,
    charts: Vec<ChartRef>,
    /// One power-over-time chart per cell with a trace.
    trace_charts: Vec<ChartRef>,
    /// `layers` cells with their per-layer rows.
    layer_cells: Vec<LayerCellView<'a>>,
    layer_charts: Vec<ChartRef>,
    /// The precision savings are given against (`report.baseline`).
    baseline: String,
    /// Cost against quality, per model and sequence length, with the Pareto front.
    tradeoffs: Vec<TradeoffView>,
    /// Each distinct set of kernels that ran, with the cells that ran it.
    implementations: Vec<ImplementationView>,
    /// Every implementation part any record names, the columns of "What ran".
    implementation_parts: Vec<String>,
    /// Precisions whose records say more about what executed than their names.
    executed: Vec<ExecutedView>,
    /// The workers that measured the cells of a multi-worker run (one per GPU, or Slurm array
    /// tasks), with their devices; empty for an ordinary run.
    workers: Vec<WorkerView>,
    /// Several workers measured at once on one host: the report warns about shared power and
    /// cooling.
    workers_shared_host: bool,
    /// Those workers measured on GPUs (else CPUs).
    workers_on_gpus: bool,
    /// Quantized cells against the float precision each replaces.
    quantized: Vec<QuantizedComparison>,
    /// Why quantized cells ran slower than their float path on this kind of device, when any did.
    quantized_slower_why: Option<String>,
    /// TF32 on or off for fp32 GEMMs on CUDA, or "not recorded"; `None` off CUDA.
    tf32: Option<String>,
    /// Models that ran with random (seeded) weights: their fidelity and accuracy get a caveat.
    random_weight_models: Vec<&'a str>,
    /// What the report opens with: the cheapest cells and the ratios readers ask for.
    findings: Findings,
    /// The fidelity section: per cell the figure its output width makes meaningful.
    fidelity: fidelity::FidelityView<'a>,
    /// Short flag codes for the results table, their legend and each flagged cell's sentences.
    flags: flags::FlagView,
    /// Columns of the results table that would say "n/a" in every row are left out.
    show_wraparounds: bool,
    /// Per batch and inference, per decode step and generated token, or both named.
    units: views::TableUnits,
    /// Which statistic the points and intervals are, and that the intervals are within-run.
    statistic_note: &'static str,
    /// Per-layer methods side by side, "quantize first", the `quantize` selections.
    per_layer: quantize_first::PerLayerView,
    /// What a reviewer checks first: energy scope, GPU and software, throttling, windows.
    first: first_screen::FirstScreen,
    /// The chart shown beside the findings (energy where measured, else latency).
    lead_chart: Option<usize>,
    /// The axes that vary (a column each in the tables) and those that do not (said once).
    axes: AxesView,
}

#[derive(Debug, Serialize)]
struct AxisColumn {
    axis: String,
    title: String,
}

#[derive(Debug, Serialize)]
struct AxesView {
    columns: Vec<AxisColumn>,
    /// `model distilbert`, `seq 128`: the value every cell shares.
    constant: Vec<String>,
}

/// The axes of `cells`: a partial run's report passes its whole plan, so "every cell" speaks of
/// every planned cell, not only the recorded ones.
fn axes_view(cells: &[&Cell]) -> AxesView {
    let labels = Labels::new(cells.iter().copied());
    let all: Vec<Vec<crate::matrix::AxisValue>> = cells.iter().map(|c| c.axes()).collect();
    let Some(first) = all.first() else {
        return AxesView {
            columns: Vec::new(),
            constant: Vec::new(),
        };
    };
    let mut columns = Vec::new();
    let mut constant = Vec::new();
    for (i, a) in first.iter().enumerate() {
        if labels.varies(&a.axis) {
            columns.push(AxisColumn {
                title: axis_title(&a.axis).to_string(),
                axis: a.axis.clone(),
            });
        } else if let Some(v) = all.iter().find_map(|axes| axes[i].value.as_ref()) {
            constant.push(format!("{} {v}", axis_title(&a.axis)));
        }
    }
    AxesView { columns, constant }
}

/// A planned cell with no record, named by every axis (the recorded cells' labels cannot tell
/// it apart from them).
#[derive(Debug, Serialize)]
struct MissingCell {
    id: String,
    description: String,
    /// Each axis's value by name (empty where it does not apply), as `CellSummary` has them.
    axis_values: std::collections::BTreeMap<String, String>,
}

impl MissingCell {
    fn new(cell: &Cell) -> Self {
        Self {
            id: cell.id.clone(),
            description: crate::analysis::description(cell),
            axis_values: cell
                .axes()
                .into_iter()
                .map(|a| (a.axis, a.value.unwrap_or_default()))
                .collect(),
        }
    }
}

/// Shown wherever the reader meets intervals.
const STATISTIC_NOTE: &str = "Points are medians over the windows. A cell's 95 % interval is \
    the order-statistic interval of its median (with the windows sorted, [lowest, highest] of 6 \
    windows, [2nd, 2nd-highest] of 10): its coverage is exact for any distribution of windows \
    (96.9 % with 6, 97.9 % with 10) and it needs 6 windows; with fewer a cell has no interval. \
    Ratios between cells are Hodges–Lehmann estimates (the median of the ratios of every pair of \
    windows) with exact Mann–Whitney 95 % intervals, from 4 windows a cell. The intervals are \
    within-run: they hold this run's window-to-window noise, not the variation from one run to \
    the next (another boot, another GPU of the same kind), which runner compare RUN_A RUN_B \
    measures against its noise threshold.";

/// A user-chosen name made safe for a file name: letters, digits, `-`, `_` kept, the rest `_`.
pub(crate) fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct LayerCellView<'a> {
    cell: &'a CellSummary,
    rows: Vec<&'a LayerSummary>,
    /// What the cell's units are (an encoder's or a decoder's), for the paragraph on them.
    units: layer_units::LayerUnits,
    /// Σ against the whole model, per phase and method (empty: no whole-model cell to match).
    reconciliation: Vec<crate::analysis::ReconciliationRow>,
}

#[derive(Debug, Serialize)]
struct Counts {
    planned: usize,
    ok: usize,
    skipped: usize,
    failed: usize,
}

#[derive(Debug, Serialize)]
struct ChartRef {
    title: String,
    /// `charts/NAME.svg`
    file_name: String,
    /// `charts/NAME.png`, linked from the Markdown report.
    png_name: String,
    svg: Value,
}

impl ChartRef {
    /// Writes the chart's SVG and PNG into `chart_dir`; the reference for the templates.
    fn write(chart: &charts::Chart, chart_dir: &Path) -> Result<Self> {
        // Chart names hold model names and cell ids: never let one leave the charts folder.
        anyhow::ensure!(
            Path::new(&chart.file_name).file_name() == Some(std::ffi::OsStr::new(&chart.file_name))
                && !chart.file_name.starts_with('.'),
            "refusing to write chart {:?}: not a plain file name",
            chart.file_name
        );
        write_derived(&chart_dir.join(&chart.file_name), chart.svg.as_bytes())?;
        write_derived(&chart_dir.join(chart.png_name()), &chart.png)?;
        Ok(Self {
            title: chart.title.clone(),
            file_name: format!("charts/{}", chart.file_name),
            png_name: format!("charts/{}", chart.png_name()),
            svg: Value::from_safe_string(strip_xml_declaration(&chart.svg)),
        })
    }
}

/// Paths of what [`render`] wrote.
pub struct Written {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub summary_csv: PathBuf,
}

/// The command that completes a partial run, as its report shows it: the caller knows how the run
/// was driven (resumed by `runner run`, or resubmitted to Slurm), the report does not.
pub type ContinueCommand<'a> = &'a dyn Fn(&Manifest, &Path) -> String;

/// What to say when rendering fails after the cells were measured (a full disk, a template that
/// fails on this run's data): the records are kept, and `runner report` renders them later.
pub fn render_failed_hint(dir: &Path) -> String {
    format!(
        "rendering the reports of {} failed; every record is kept: once the cause is fixed (e.g. space freed), render them with `runner report {}`",
        dir.display(),
        crate::shell::shell_quote(&dir.display().to_string())
    )
}

/// Reads the run directory and (re)writes summary.csv, the charts and both reports.
pub fn render(
    run: &RunDir,
    templates: &TemplateSource,
    continue_command: ContinueCommand<'_>,
) -> Result<(Written, Vec<CellSummary>)> {
    let _render = run.render_lock()?;
    let manifest = run.read_manifest()?;
    let records = run.read_records(&manifest)?;
    // A run kept as its summary only (no cells/ folder, as evidence is often committed): its
    // summary.csv and reports are all that is left of what it measured, and rendering from no
    // records would replace them with empty ones.
    if records.is_empty() && std::fs::symlink_metadata(run.path.join("cells")).is_err() {
        return Err(crate::error::InputError::new(format!(
            "{}: no cells/ folder, so no records to render from; its summary.csv and reports are kept as they are (restore cells/ from a copy of the run to render them again)",
            run.path.display()
        ))
        .into());
    }
    render_unlocked(run, templates, &manifest, &records, continue_command)
}

/// Renders `records` (a run's own, in memory, at its end) under the run's render lock.
pub fn render_records(
    run: &RunDir,
    templates: &TemplateSource,
    manifest: &Manifest,
    records: &[CellRecord],
    continue_command: ContinueCommand<'_>,
) -> Result<(Written, Vec<CellSummary>)> {
    let _render = run.render_lock()?;
    render_unlocked(run, templates, manifest, records, continue_command)
}

fn render_unlocked(
    run: &RunDir,
    templates: &TemplateSource,
    manifest: &Manifest,
    records: &[CellRecord],
    continue_command: ContinueCommand<'_>,
) -> Result<(Written, Vec<CellSummary>)> {
    // Workers (multi-GPU runs, Slurm array tasks) keep their sessions in their own files: the
    // report shows them with the run's own.
    let worker_sessions = run.read_worker_sessions()?;
    let merged;
    let manifest = if worker_sessions.is_empty() {
        manifest
    } else {
        let mut m = manifest.clone();
        if m.sampler_overhead.is_none() {
            m.sampler_overhead = worker_sessions
                .iter()
                .find_map(|s| s.sampler_overhead.clone());
        }
        m.sessions.extend(worker_sessions);
        merged = m;
        &merged
    };
    let baseline = manifest.config.report.baseline;
    let summaries = summarize_all(records, baseline);
    // The run's own folder, never a link to somewhere else: nothing is written outside the run.
    let chart_dir = crate::files::own_dir(&run.path, "charts")?;
    let charts = charts::all_charts(&summaries)?
        .iter()
        .map(|c| ChartRef::write(c, &chart_dir))
        .collect::<Result<Vec<_>>>()?;
    let decoder_charts = charts::decoder_charts(&summaries)?
        .iter()
        .map(|c| ChartRef::write(c, &chart_dir))
        .collect::<Result<Vec<_>>>()?;

    let idle_w = manifest.idle_baseline.as_ref().map(|i| i.power_w);
    let mut traces = Vec::new();
    for s in &summaries {
        if let Some(samples) = run.read_trace(&s.id)? {
            traces.push((s, samples));
        }
    }
    // One y axis for every trace, so the grid of traces compares power at a glance.
    let power_max = traces
        .iter()
        .flat_map(|(_, samples)| samples.iter().map(|p| p.power_w))
        .chain(idle_w)
        .fold(1f64, f64::max);
    let mut trace_charts = Vec::new();
    for (s, samples) in &traces {
        // A decoder's shape is its prompt and new tokens, not a sequence length.
        let title = if s.prompt_len.is_some() {
            format!("{} {}", s.id, s.description)
        } else {
            format!(
                "{} {} {} batch {} seq {}",
                s.id, s.model, s.precision, s.batch_size, s.seq_len
            )
        };
        let (svg, png) = charts::power_trace(&title, samples, idle_w, power_max)?;
        let chart = charts::Chart {
            file_name: format!("trace-{}.svg", s.id),
            title,
            svg,
            png,
        };
        trace_charts.push(ChartRef::write(&chart, &chart_dir)?);
    }

    let summary_csv = run.path.join("summary.csv");
    write_derived(&summary_csv, &summary_csv_bytes(&summaries)?)?;
    let layers = layer_summaries(records, baseline);
    let per_layer_csv = run.path.join("per_layer.csv");
    let mut layer_charts = Vec::new();
    if !layers.is_empty() || records.iter().any(|r| !r.prefixes.is_empty()) {
        write_derived(
            &per_layer_csv,
            &per_layer_csv_bytes(&layers, &summaries, records)?,
        )?;
        for chart in charts::layer_charts(&layers, &summaries)? {
            layer_charts.push(ChartRef::write(&chart, &chart_dir)?);
        }
    }
    let layer_cells = summaries
        .iter()
        .filter(|s| layers.iter().any(|l| l.cell_id == s.id))
        .map(|cell| {
            let rows: Vec<&LayerSummary> = layers.iter().filter(|l| l.cell_id == cell.id).collect();
            LayerCellView {
                cell,
                units: layer_units::layer_units(&rows),
                rows,
                reconciliation: records
                    .iter()
                    .find(|r| r.cell.id == cell.id)
                    .and_then(|r| {
                        let rec = crate::analysis::reconcile_in(r, records)?;
                        Some(crate::analysis::reconciliation_rows(r, &rec))
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();

    let recorded: std::collections::HashSet<&str> =
        records.iter().map(|r| r.cell.id.as_str()).collect();
    let missing: Vec<_> = manifest
        .plan
        .iter()
        .filter(|c| !recorded.contains(c.id.as_str()))
        .map(MissingCell::new)
        .collect();
    let count = |s: CellStatus| records.iter().filter(|r| r.status == s).count();
    let energy_measured = summaries
        .iter()
        .any(|s| s.energy_per_inference_mj.is_some());
    let lead = if energy_measured {
        "charts/energy.svg"
    } else {
        "charts/latency.svg"
    };
    let lead_chart = charts.iter().position(|c| c.file_name == lead);
    let quantized = quantized_comparisons(&summaries);
    let workers = worker_views(records, &manifest.sessions);
    // Several workers, all on one host: they shared its power, cooling (or CPU cores).
    let workers_shared_host = workers.len() > 1 && {
        let hosts: std::collections::BTreeSet<&String> =
            workers.iter().filter_map(|w| w.host.as_ref()).collect();
        hosts.len() == 1
    };
    let ctx = ReportContext {
        manifest,
        config_toml: toml::to_string_pretty(&manifest.config)
            .context("rendering the configuration as TOML")?,
        cells: &summaries,
        decoders: summaries
            .iter()
            .filter(|s| s.prompt_len.is_some())
            .collect(),
        decoder_charts,
        // A Slurm run has no process that sees its end: its records say whether it is complete.
        partial: !missing.is_empty()
            || (manifest.ended_at.is_none() && manifest.launcher.as_deref() != Some("slurm")),
        resume_command: continue_command(manifest, &run.path),
        missing,
        counts: Counts {
            planned: manifest.plan.len(),
            ok: count(CellStatus::Ok),
            skipped: count(CellStatus::Skipped),
            failed: count(CellStatus::Failed),
        },
        energy_note: records
            .iter()
            .find(|r| !r.sensor.measures_energy)
            .map_or_else(|| manifest.sensor.note.clone(), |r| r.sensor.note.clone()),
        energy_measured,
        charts,
        trace_charts,
        layer_cells,
        layer_charts,
        baseline: baseline.name().to_string(),
        tradeoffs: tradeoff_views(&summaries, &chart_dir)?,
        workers,
        workers_shared_host,
        workers_on_gpus: records
            .iter()
            .any(|r| r.worker.is_some() && r.device.backend == "cuda"),
        implementations: implementation_views(records),
        implementation_parts: implementation_parts(records),
        executed: executed_views(&summaries),
        quantized_slower_why: quantized.iter().any(|q| q.slower).then(|| {
            quantized_slower_why(&manifest.device.backend, &manifest.device.name, &quantized)
        }),
        quantized,
        tf32: tf32_statement(records),
        random_weight_models: manifest
            .config
            .models
            .iter()
            .filter(|(_, m)| m.weights == "random")
            .map(|(name, _)| name.as_str())
            .collect(),
        findings: findings(&summaries, baseline),
        fidelity: fidelity::fidelity_view(&manifest.config, &summaries),
        flags: flags::flag_view(&summaries),
        units: views::table_units(&summaries),
        show_wraparounds: summaries.iter().any(|s| s.dataset_wraparounds.is_some()),
        statistic_note: STATISTIC_NOTE,
        per_layer: quantize_first::per_layer_view(records, &summaries),
        first: first_screen::first_screen(manifest, records, &summaries, energy_measured),
        lead_chart,
        // The plan's axes: in a partial run the recorded cells alone may all share a value
        // that the missing ones do not.
        axes: axes_view(
            &manifest
                .plan
                .iter()
                .chain(summaries.iter().map(|s| &s.cell))
                .collect::<Vec<_>>(),
        ),
    };

    let env = templates.environment()?;
    let written = Written {
        html: run.path.join("report.html"),
        markdown: run.path.join("report.md"),
        summary_csv,
    };
    for (template, path) in [
        (HTML_TEMPLATE, &written.html),
        (MD_TEMPLATE, &written.markdown),
    ] {
        let text = env
            .get_template(template)
            .and_then(|t| t.render(context! { r => &ctx }))
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("rendering {template}"))?;
        write_derived(path, text.as_bytes())?;
    }
    Ok((written, summaries))
}

/// An inline <svg> inside HTML must not carry an XML declaration.
fn strip_xml_declaration(svg: &str) -> String {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg, |(_, body)| body)
            .trim_start()
            .to_string(),
        None => svg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LayerMethod, Precision, PrefillAttention, QuantizeSelection, Scope};

    fn cell(id: &str, batch_size: usize, scope: Scope) -> Cell {
        Cell {
            id: id.into(),
            model: "tiny".into(),
            precision: Precision::Fp32,
            batch_size,
            seq_len: 16,
            prompt_len: None,
            new_tokens: None,
            scope,
            quantize: QuantizeSelection::default(),
            layer_method: LayerMethod::Isolated,
            prefill_attention: PrefillAttention::Plain,
        }
    }

    #[test]
    fn a_partial_runs_axes_and_missing_cells_come_from_its_plan() {
        let plan = [
            cell("a", 2, Scope::Model),
            cell("b", 4, Scope::Model),
            cell("c", 2, Scope::Layers),
        ];
        let axes = axes_view(&plan.iter().collect::<Vec<_>>());
        let columns: Vec<&str> = axes.columns.iter().map(|c| c.axis.as_str()).collect();
        // Only cell "a" recorded: batch and scope still vary among the planned cells.
        assert_eq!(columns, ["batch_size", "scope"]);
        assert_eq!(
            axes.constant,
            [
                "model tiny",
                "precision fp32",
                "seq 16",
                "layer method isolated"
            ]
        );
        // An encoder's missing cell: its sequence length, no empty prompt, its scope named.
        let missing = MissingCell::new(&plan[2]);
        assert_eq!(
            missing.description,
            "tiny fp32 b2 seq 16 layers method=isolated"
        );
        assert_eq!(missing.axis_values["prompt_len"], "");
        assert_eq!(missing.axis_values["seq_len"], "16");
    }

    #[test]
    fn xml_declaration_is_dropped_for_inline_svg() {
        assert_eq!(
            strip_xml_declaration("<?xml version=\"1.0\"?>\n<svg/>"),
            "<svg/>"
        );
        assert_eq!(strip_xml_declaration("<svg/>"), "<svg/>");
    }
}
