//! Reports: summary.csv, report.md (+ SVG charts beside it) and a self-contained report.html,
//! rendered from the run directory alone, so `runner report DIR` reproduces them byte for byte.
//!
//! Templates are minijinja files users may edit without recompiling: `--templates DIR`, else
//! `./templates` when it holds them, else the copies built into the binary.

pub mod charts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use minijinja::{context, Environment, Value};
use serde::Serialize;

use crate::analysis::{
    layer_summaries, quantized_comparisons, summarize_all, CellSummary, LayerSummary,
    QuantizedComparison,
};
use crate::results::{write_derived, CellRecord, CellStatus, Manifest, RunDir};

pub const HTML_TEMPLATE: &str = "report.html.j2";
pub const MD_TEMPLATE: &str = "report.md.j2";
const BUILTIN_HTML: &str = include_str!("../../templates/report.html.j2");
const BUILTIN_MD: &str = include_str!("../../templates/report.md.j2");

/// Where the report templates come from.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    Dir(PathBuf),
    BuiltIn,
}

impl TemplateSource {
    /// `explicit` (from `--templates`) must hold both templates; otherwise `./templates` is used
    /// when it holds them, else the built-in copies.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        let complete = |d: &Path| d.join(HTML_TEMPLATE).is_file() && d.join(MD_TEMPLATE).is_file();
        match explicit {
            Some(dir) if complete(dir) => Ok(Self::Dir(dir.to_path_buf())),
            Some(dir) => Err(crate::error::ConfigError::new(format!(
                "--templates {}: the folder must hold {HTML_TEMPLATE} and {MD_TEMPLATE}",
                dir.display()
            ))
            .into()),
            None if complete(Path::new("templates")) => Ok(Self::Dir(PathBuf::from("templates"))),
            None => Ok(Self::BuiltIn),
        }
    }

    fn environment(&self) -> Result<Environment<'static>> {
        let mut env = Environment::new();
        match self {
            Self::Dir(dir) => env.set_loader(minijinja::path_loader(dir)),
            Self::BuiltIn => {
                env.add_template(HTML_TEMPLATE, BUILTIN_HTML)?;
                env.add_template(MD_TEMPLATE, BUILTIN_MD)?;
            }
        }
        env.add_filter("num", format_number);
        Ok(env)
    }
}

/// `{{ value | num(2) }}`: fixed decimals, "n/a" for a missing value.
fn format_number(value: Value, digits: Option<usize>) -> String {
    let digits = digits.unwrap_or(2);
    if value.is_none() || value.is_undefined() {
        return "n/a".into();
    }
    match f64::try_from(value.clone()) {
        Ok(v) => format!("{v:.digits$}"),
        Err(_) => value.to_string(),
    }
}

/// What a report shows; also the context handed to the templates.
#[derive(Debug, Serialize)]
struct ReportContext<'a> {
    manifest: &'a Manifest,
    config_toml: String,
    cells: &'a [CellSummary],
    /// Planned cells with no record yet (a partial run).
    missing: Vec<&'a crate::matrix::Cell>,
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
    quantized_slower_why: Option<&'static str>,
}

/// Why a quantized precision is slower than the float path it replaces, by backend; the CUDA
/// numbers are the runner's own profile (examples/op_timing.rs).
fn quantized_slower_why(backend: &str) -> &'static str {
    if backend == "cuda" {
        "each quantized linear runs candle's GGML kernels: the activations are first quantized to \
         8-bit blocks (a pass of its own), then multiplied by integer MMQ kernels written for the few \
         rows of LLM token generation. At the hundreds to thousands of rows of a batch here a forward \
         pass is compute-bound, and cuBLAS's fp16/bf16 tensor-core GEMMs do several times more work \
         per second: on an H100 at batch 64 x seq 128, DistilBERT's FFN-in linear took 374 us as a \
         q8_0 QMatMul (103 TFLOP/s) against 62 us in fp16 (625 TFLOP/s; \
         docs/results/2026-11-24-nvidia-h100-80gb-hbm3-speed/op_timing.txt). The memory 4- and \
         8-bit weights save (DistilBERT's 85 MB of fp16 linear weights become 24-45 MB) pays only \
         where reading weights dominates, as in token-by-token decoding of much larger models. The \
         quantized path also keeps Q, K and V as three matmuls with three head-split copies where \
         the float path runs one GEMM and one fused kernel. Here quantization saves GPU memory, not \
         time or energy."
    } else {
        "the runner has not profiled candle's quantized CPU kernels (GGML block formats); the ratios \
         are what they measured against the float path on this CPU, and the per-cell precision \
         and implementation records say exactly what ran."
    }
}

#[derive(Debug, Serialize)]
struct ImplementationView {
    /// `model precision`, one entry per distinct pair that ran these kernels.
    used_by: Vec<String>,
    parts: BTreeMap<String, String>,
}

/// Groups the records by the implementation they recorded (records from before it was recorded
/// have none and are left out).
fn implementation_views(records: &[CellRecord]) -> Vec<ImplementationView> {
    let mut views: Vec<ImplementationView> = Vec::new();
    for r in records {
        let Some(parts) = &r.implementation else {
            continue;
        };
        let who = format!("{} {}", r.cell.model, r.cell.precision.name());
        match views.iter_mut().find(|v| &v.parts == parts) {
            Some(v) if !v.used_by.contains(&who) => v.used_by.push(who),
            Some(_) => {}
            None => views.push(ImplementationView {
                used_by: vec![who],
                parts: parts.clone(),
            }),
        }
    }
    views
}

#[derive(Debug, Serialize)]
struct WorkerView {
    label: String,
    /// backend, name, ordinal and UUID of the device the worker measured on.
    device: String,
    host: Option<String>,
    cells: Vec<String>,
    failed: usize,
}

/// The records grouped by the worker that measured them (plan order within each).
fn worker_views(records: &[CellRecord], sessions: &[crate::results::Session]) -> Vec<WorkerView> {
    let mut views: Vec<WorkerView> = Vec::new();
    for r in records {
        let Some(label) = &r.worker else { continue };
        let view = match views.iter_mut().position(|v| &v.label == label) {
            Some(i) => &mut views[i],
            None => {
                let d = &r.device;
                let mut device = format!("{} ({})", d.name, d.backend);
                if let Some(k) = d.ordinal {
                    device.push_str(&format!(", CUDA ordinal {k}"));
                }
                if let Some(uuid) = &d.uuid {
                    device.push_str(&format!(", {uuid}"));
                }
                let host = sessions
                    .iter()
                    .find(|s| s.worker.as_ref().is_some_and(|w| &w.label == label))
                    .map(|s| s.hostname.clone());
                views.push(WorkerView {
                    label: label.clone(),
                    device,
                    host,
                    cells: Vec::new(),
                    failed: 0,
                });
                views.last_mut().expect("just pushed")
            }
        };
        view.cells.push(r.cell.id.clone());
        view.failed += usize::from(r.status == CellStatus::Failed);
    }
    views.sort_by(|a, b| a.label.cmp(&b.label));
    views
}

/// The union of the parts the records name, sorted: records written by different runner
/// versions (a resumed run) may name different parts.
fn implementation_parts(records: &[CellRecord]) -> Vec<String> {
    let parts: std::collections::BTreeSet<&String> = records
        .iter()
        .filter_map(|r| r.implementation.as_ref())
        .flat_map(|parts| parts.keys())
        .collect();
    parts.into_iter().cloned().collect()
}

#[derive(Debug, Serialize)]
struct TradeoffView {
    model: String,
    seq_len: usize,
    /// `fidelity` or `accuracy`.
    quality: &'static str,
    cost_label: &'static str,
    chart: ChartRef,
    /// The Pareto-optimal cells, by increasing cost.
    front: Vec<charts::TradeoffPoint>,
}

/// (what is plotted, its name, its value for a cell).
type QualitySpec = (
    charts::Quality,
    &'static str,
    fn(&CellSummary) -> Option<f64>,
);

/// Energy (or, where not measured, latency) against fidelity and accuracy for each model and
/// sequence length, whole-model cells only.
fn tradeoff_views(summaries: &[CellSummary], chart_dir: &Path) -> Result<Vec<TradeoffView>> {
    use charts::{Quality, TradeoffPoint};
    let mut groups: std::collections::BTreeMap<(String, usize), Vec<&CellSummary>> =
        Default::default();
    for s in summaries
        .iter()
        .filter(|s| s.scope == "model" && s.status == CellStatus::Ok)
    {
        groups
            .entry((s.model.clone(), s.seq_len))
            .or_default()
            .push(s);
    }
    let mut views = Vec::new();
    for ((model, seq_len), cells) in groups {
        let energy = cells.iter().any(|s| s.energy_per_inference_mj.is_some());
        let (cost_label, cost): (&str, fn(&CellSummary) -> Option<f64>) = if energy {
            ("energy per inference, mJ", |s| s.energy_per_inference_mj)
        } else {
            ("latency per sample, ms (energy not measured)", |s| {
                s.latency_per_sample_ms
            })
        };
        let qualities: [QualitySpec; 2] = [
            (Quality::CosineDistance, "fidelity", |s| match &s.fidelity {
                Some(f) => Some((1.0 - f.cosine).max(0.0)),
                None if s.precision == "fp32" => Some(0.0),
                None => None,
            }),
            (Quality::Accuracy, "accuracy", |s| {
                s.accuracy.as_ref().map(|a| a.accuracy * 100.0)
            }),
        ];
        for (quality, name, value) in qualities {
            let points: Vec<TradeoffPoint> = cells
                .iter()
                .filter_map(|s| {
                    Some(TradeoffPoint {
                        cell_id: s.id.clone(),
                        precision: s.precision.clone(),
                        batch_size: s.batch_size,
                        cost: cost(s)?,
                        quality: value(s)?,
                    })
                })
                .collect();
            // A trade-off needs something to trade: two precisions at least.
            let distinct: std::collections::BTreeSet<&str> =
                points.iter().map(|p| p.precision.as_str()).collect();
            if name == "fidelity" && !cells.iter().any(|s| s.fidelity.is_some())
                || distinct.len() < 2
            {
                continue;
            }
            let title = format!("{model}, seq {seq_len}: cost against {name}");
            let (svg, png) = charts::tradeoff_chart(&title, cost_label, quality, &points)?;
            let chart = charts::Chart {
                file_name: format!("tradeoff-{name}-{}-s{seq_len}.svg", file_safe(&model)),
                title,
                svg,
                png,
            };
            let front = charts::tradeoff_front(&points, quality)
                .into_iter()
                .map(|i| points[i].clone())
                .collect();
            views.push(TradeoffView {
                model: model.clone(),
                seq_len,
                quality: name,
                cost_label,
                chart: ChartRef::write(&chart, chart_dir)?,
                front,
            });
        }
    }
    Ok(views)
}

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

/// Reads the run directory and (re)writes summary.csv, the charts and both reports.
pub fn render(
    run: &RunDir,
    templates: &TemplateSource,
    continue_command: ContinueCommand<'_>,
) -> Result<(Written, Vec<CellSummary>)> {
    let manifest = run.read_manifest()?;
    let records = run.read_records(&manifest.plan)?;
    render_records(run, templates, &manifest, &records, continue_command)
}

pub fn render_records(
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
    let chart_dir = run.path.join("charts");
    std::fs::create_dir_all(&chart_dir)
        .with_context(|| format!("creating {}", chart_dir.display()))?;
    let charts = charts::all_charts(&summaries)?
        .iter()
        .map(|c| ChartRef::write(c, &chart_dir))
        .collect::<Result<Vec<_>>>()?;

    let idle_w = manifest.idle_baseline.as_ref().map(|i| i.power_w);
    let mut trace_charts = Vec::new();
    for s in &summaries {
        let Some(samples) = read_trace(&run.path.join("traces").join(format!("{}.csv", s.id)))?
        else {
            continue;
        };
        let title = format!(
            "{} {} {} batch {} seq {}",
            s.id, s.model, s.precision, s.batch_size, s.seq_len
        );
        let (svg, png) = charts::power_trace(&title, &samples, idle_w)?;
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
    if !layers.is_empty() {
        write_derived(&per_layer_csv, &per_layer_csv_bytes(&layers, &summaries)?)?;
        for chart in charts::layer_charts(&layers)? {
            layer_charts.push(ChartRef::write(&chart, &chart_dir)?);
        }
    }
    let layer_cells = summaries
        .iter()
        .filter(|s| layers.iter().any(|l| l.cell_id == s.id))
        .map(|cell| LayerCellView {
            cell,
            rows: layers.iter().filter(|l| l.cell_id == cell.id).collect(),
        })
        .collect();

    let recorded: std::collections::HashSet<&str> =
        records.iter().map(|r| r.cell.id.as_str()).collect();
    let missing: Vec<_> = manifest
        .plan
        .iter()
        .filter(|c| !recorded.contains(c.id.as_str()))
        .collect();
    let count = |s: CellStatus| records.iter().filter(|r| r.status == s).count();
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
        energy_measured: summaries
            .iter()
            .any(|s| s.energy_per_inference_mj.is_some()),
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
        quantized_slower_why: quantized
            .iter()
            .any(|q| q.slower)
            .then(|| quantized_slower_why(&manifest.device.backend)),
        quantized,
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

/// A cell's power trace (`t_s,power_w` rows), or `None` when the cell has no trace file.
fn read_trace(path: &Path) -> Result<Option<Vec<crate::sensor::PowerSample>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let samples = reader
        .deserialize()
        .collect::<std::result::Result<Vec<crate::sensor::PowerSample>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(samples))
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

/// One row per cell, with the original notebook's column names; empty where not measured.
#[derive(Serialize)]
struct SummaryRow<'a> {
    cell_id: &'a str,
    model: &'a str,
    precision: &'a str,
    precision_executed: Option<&'a str>,
    batch_size: usize,
    seq_len: usize,
    scope: &'a str,
    status: CellStatus,
    device: &'a str,
    energy_per_inference_mj: Option<f64>,
    energy_ci_low_mj: Option<f64>,
    energy_ci_high_mj: Option<f64>,
    energy_net_per_inference_mj: Option<f64>,
    avg_power_w: Option<f64>,
    idle_power_w: Option<f64>,
    latency_per_loop_ms: Option<f64>,
    latency_p10_ms: Option<f64>,
    latency_p90_ms: Option<f64>,
    latency_ci_low_ms: Option<f64>,
    latency_ci_high_ms: Option<f64>,
    latency_per_sample_ms: Option<f64>,
    throughput_samples_per_s: Option<f64>,
    total_time_s: Option<f64>,
    num_loops: Option<u64>,
    repeats: usize,
    num_power_samples: usize,
    counter_ticks: Option<u64>,
    min_window_ticks: Option<u64>,
    trace_vs_counter: Option<f64>,
    window_cv: Option<f64>,
    dataset_wraparounds: Option<u64>,
    fidelity_cosine_vs_fp32: Option<f64>,
    fidelity_min_example_cosine: Option<f64>,
    fidelity_max_abs_error: Option<f64>,
    fidelity_label_agreement: Option<f64>,
    fidelity_examples: Option<usize>,
    accuracy: Option<f64>,
    accuracy_ci95_low: Option<f64>,
    accuracy_ci95_high: Option<f64>,
    accuracy_examples: Option<usize>,
    baseline_precision: Option<&'a str>,
    energy_saving_pct: Option<f64>,
    energy_saving_ci_low_pct: Option<f64>,
    energy_saving_ci_high_pct: Option<f64>,
    latency_saving_pct: Option<f64>,
    latency_saving_ci_low_pct: Option<f64>,
    latency_saving_ci_high_pct: Option<f64>,
    flags: String,
    reason: Option<&'a str>,
}

pub const SUMMARY_COLUMNS: [&str; 49] = [
    "cell_id",
    "model",
    "precision",
    "precision_executed",
    "batch_size",
    "seq_len",
    "scope",
    "status",
    "device",
    "energy_per_inference_mj",
    "energy_ci_low_mj",
    "energy_ci_high_mj",
    "energy_net_per_inference_mj",
    "avg_power_w",
    "idle_power_w",
    "latency_per_loop_ms",
    "latency_p10_ms",
    "latency_p90_ms",
    "latency_ci_low_ms",
    "latency_ci_high_ms",
    "latency_per_sample_ms",
    "throughput_samples_per_s",
    "total_time_s",
    "num_loops",
    "repeats",
    "num_power_samples",
    "counter_ticks",
    "min_window_ticks",
    "trace_vs_counter",
    "window_cv",
    "dataset_wraparounds",
    "fidelity_cosine_vs_fp32",
    "fidelity_min_example_cosine",
    "fidelity_max_abs_error",
    "fidelity_label_agreement",
    "fidelity_examples",
    "accuracy",
    "accuracy_ci95_low",
    "accuracy_ci95_high",
    "accuracy_examples",
    "baseline_precision",
    "energy_saving_pct",
    "energy_saving_ci_low_pct",
    "energy_saving_ci_high_pct",
    "latency_saving_pct",
    "latency_saving_ci_low_pct",
    "latency_saving_ci_high_pct",
    "flags",
    "reason",
];

fn summary_csv_bytes(summaries: &[CellSummary]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if summaries.is_empty() {
        w.write_record(SUMMARY_COLUMNS)?;
    }
    for s in summaries {
        w.serialize(SummaryRow {
            cell_id: &s.id,
            model: &s.model,
            precision: &s.precision,
            precision_executed: s.precision_executed.as_deref(),
            batch_size: s.batch_size,
            seq_len: s.seq_len,
            scope: &s.scope,
            status: s.status,
            device: &s.device,
            energy_per_inference_mj: s.energy_per_inference_mj,
            energy_ci_low_mj: s.energy_ci_low_mj,
            energy_ci_high_mj: s.energy_ci_high_mj,
            energy_net_per_inference_mj: s.energy_net_per_inference_mj,
            avg_power_w: s.avg_power_w,
            idle_power_w: s.idle_power_w,
            latency_per_loop_ms: s.latency_per_loop_ms,
            latency_p10_ms: s.latency_p10_ms,
            latency_p90_ms: s.latency_p90_ms,
            latency_ci_low_ms: s.latency_ci_low_ms,
            latency_ci_high_ms: s.latency_ci_high_ms,
            latency_per_sample_ms: s.latency_per_sample_ms,
            throughput_samples_per_s: s.throughput_samples_per_s,
            total_time_s: s.total_time_s,
            num_loops: s.num_loops,
            repeats: s.repeats,
            num_power_samples: s.num_power_samples,
            counter_ticks: s.counter_ticks,
            min_window_ticks: s.min_window_ticks,
            trace_vs_counter: s.trace_vs_counter,
            window_cv: s.window_cv,
            dataset_wraparounds: s.dataset_wraparounds,
            fidelity_cosine_vs_fp32: s.fidelity.as_ref().map(|f| f.cosine),
            fidelity_min_example_cosine: s.fidelity.as_ref().map(|f| f.min_example_cosine),
            fidelity_max_abs_error: s.fidelity.as_ref().map(|f| f.max_abs_error),
            fidelity_label_agreement: s.fidelity.as_ref().map(|f| f.label_agreement),
            fidelity_examples: s.fidelity.as_ref().map(|f| f.examples),
            accuracy: s.accuracy.as_ref().map(|a| a.accuracy),
            accuracy_ci95_low: s.accuracy.as_ref().map(|a| a.ci95_low),
            accuracy_ci95_high: s.accuracy.as_ref().map(|a| a.ci95_high),
            accuracy_examples: s.accuracy.as_ref().map(|a| a.examples),
            baseline_precision: s.savings.as_ref().map(|v| v.baseline_precision.as_str()),
            energy_saving_pct: s.savings.as_ref().and_then(|v| v.energy_pct),
            energy_saving_ci_low_pct: s.savings.as_ref().and_then(|v| v.energy_ci_low_pct),
            energy_saving_ci_high_pct: s.savings.as_ref().and_then(|v| v.energy_ci_high_pct),
            latency_saving_pct: s.savings.as_ref().and_then(|v| v.latency_pct),
            latency_saving_ci_low_pct: s.savings.as_ref().and_then(|v| v.latency_ci_low_pct),
            latency_saving_ci_high_pct: s.savings.as_ref().and_then(|v| v.latency_ci_high_pct),
            flags: s.flags.join("; "),
            reason: s.reason.as_deref(),
        })?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    if bytes.is_empty() {
        bail!("summary.csv came out empty");
    }
    Ok(bytes)
}

/// per_layer.csv: one row per layer or component of every `layers` cell, with the cell's
/// reconciliation against the whole model repeated on each row.
pub const PER_LAYER_COLUMNS: [&str; 31] = [
    "cell_id",
    "model",
    "precision",
    "batch_size",
    "seq_len",
    "layer_name",
    "layer_idx",
    "parent",
    "avg_power_w",
    "total_time_s",
    "energy_total_j",
    "energy_per_inference_mj",
    "energy_net_per_inference_mj",
    "num_loops",
    "latency_per_loop_ms",
    "latency_ci_low_ms",
    "latency_ci_high_ms",
    "num_power_samples",
    "counter_ticks",
    "energy_share_pct",
    "latency_share_pct",
    "layers_sum_latency_ms",
    "layers_sum_energy_per_inference_mj",
    "layers_vs_whole_latency",
    "layers_vs_whole_energy",
    "whole_model_cell_id",
    "baseline_precision",
    "energy_saving_pct",
    "energy_saving_ci_low_pct",
    "energy_saving_ci_high_pct",
    "latency_saving_pct",
];

fn per_layer_csv_bytes(layers: &[LayerSummary], cells: &[CellSummary]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(PER_LAYER_COLUMNS)?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for l in layers {
        let cell = cells.iter().find(|c| c.id == l.cell_id);
        w.write_record([
            l.cell_id.clone(),
            l.model.clone(),
            l.precision.clone(),
            l.batch_size.to_string(),
            l.seq_len.to_string(),
            l.layer_name.clone(),
            l.layer_idx.to_string(),
            l.parent.clone().unwrap_or_default(),
            opt(l.avg_power_w),
            l.total_time_s.to_string(),
            opt(l.energy_total_j),
            opt(l.energy_per_inference_mj),
            opt(l.energy_net_per_inference_mj),
            l.num_loops.to_string(),
            opt(l.latency_per_loop_ms),
            opt(l.latency_ci_low_ms),
            opt(l.latency_ci_high_ms),
            l.num_power_samples.to_string(),
            l.counter_ticks.map(|t| t.to_string()).unwrap_or_default(),
            opt(l.energy_share_pct),
            opt(l.latency_share_pct),
            opt(cell.and_then(|c| c.latency_per_loop_ms)),
            opt(cell.and_then(|c| c.energy_per_inference_mj)),
            opt(cell.and_then(|c| c.layers_vs_whole_latency)),
            opt(cell.and_then(|c| c.layers_vs_whole_energy)),
            cell.and_then(|c| c.whole_model_cell_id.clone())
                .unwrap_or_default(),
            l.savings
                .as_ref()
                .map(|v| v.baseline_precision.clone())
                .unwrap_or_default(),
            opt(l.savings.as_ref().and_then(|v| v.energy_pct)),
            opt(l.savings.as_ref().and_then(|v| v.energy_ci_low_pct)),
            opt(l.savings.as_ref().and_then(|v| v.energy_ci_high_pct)),
            opt(l.savings.as_ref().and_then(|v| v.latency_pct)),
        ])?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_header_matches_the_documented_columns() {
        let bytes = summary_csv_bytes(&[]).unwrap();
        let header = String::from_utf8(bytes).unwrap();
        assert_eq!(header.trim_end(), SUMMARY_COLUMNS.join(","));
    }

    #[test]
    fn num_filter_formats_and_says_na_for_missing_values() {
        assert_eq!(format_number(Value::from(1.23456), Some(2)), "1.23");
        assert_eq!(format_number(Value::from(()), Some(2)), "n/a");
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
