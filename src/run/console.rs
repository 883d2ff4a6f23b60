//! What a run tells the user on the terminal: the progress bar and the lines that must not tear it,
//! one result line per cell, the per-layer breakdown when a `layers` cell ends, the closing summary
//! table, the reports written, and the cells that failed or were skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub(super) use super::console_layers::layer_breakdown;
use super::estimate::Estimate;

use crate::analysis::{axis_title, CellSummary, Labels};
use crate::matrix::Cell;
use crate::report;
use crate::results::{CellRecord, CellStatus};

pub(super) fn cell_label(cell: &Cell) -> String {
    format!(
        "{} {} {} b{} {}{}",
        cell.id,
        cell.model,
        cell.precision.name(),
        cell.batch_size,
        shape_label(cell.seq_len, cell.prompt_len, cell.new_tokens),
        beyond_shape(cell)
    )
}

/// The axes after the shape that apply to the cell (` layers quantize=ffn method=prefix`;
/// empty for a whole-model float cell): a line about one cell cannot know which of them vary,
/// so it names each that applies, and two cells never print the same label.
fn beyond_shape(cell: &Cell) -> String {
    cell.axes()
        .into_iter()
        .filter(|a| BEYOND_SHAPE.contains(&a.axis.as_str()) && !a.short.is_empty())
        .map(|a| format!(" {}", a.short))
        .collect()
}

/// The axes the console's fixed columns (model, precision, batch, shape) leave out.
const BEYOND_SHAPE: [&str; 3] = ["scope", "quantize", "layer_method"];

/// Of [`BEYOND_SHAPE`], the axes that vary among `rows`: a column each in a summary table.
fn varying_beyond_shape(rows: &[&CellSummary]) -> Vec<&'static str> {
    let labels = Labels::new(rows.iter().map(|s| &s.cell));
    BEYOND_SHAPE
        .into_iter()
        .filter(|a| labels.varies(a))
        .collect()
}

/// `header` with a column for each of `extra` inserted before `status`.
fn with_extra_columns(header: &[&str], extra: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let at = header
        .iter()
        .position(|h| *h == "status")
        .unwrap_or(out.len());
    for (i, a) in extra.iter().enumerate() {
        out.insert(at + i, axis_title(a).to_string());
    }
    out
}

/// `row` with the cell's value on each of `extra` inserted before its status (at `at`).
fn with_extra_values(
    mut row: Vec<String>,
    at: usize,
    s: &CellSummary,
    extra: &[&str],
) -> Vec<String> {
    for (i, a) in extra.iter().enumerate() {
        let v = s.axis_values.get(*a).filter(|v| !v.is_empty());
        row.insert(at + i, v.map_or("–".to_string(), Clone::clone));
    }
    row
}

/// An encoder's `s128`, a decoder's `p512+128` (prompt + generated tokens).
fn shape_label(seq_len: usize, prompt_len: Option<usize>, new_tokens: Option<usize>) -> String {
    match (prompt_len, new_tokens) {
        (Some(p), Some(n)) => format!("p{p}+{n}"),
        _ => format!("s{seq_len}"),
    }
}

/// A decoder cell's figures: time to first token, time per output token, energy per token.
fn generate_line(s: &CellSummary) -> Option<String> {
    let g = s.generate.as_ref()?;
    let f = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    Some(format!(
        "prefill {} ms/batch{}, decode {} ms/step, {} tokens/s{}",
        f(g.prefill_ms, 3),
        g.prefill_mj_per_prompt_token
            .map(|e| format!(" ({e:.3} mJ/prompt token)"))
            .unwrap_or_default(),
        f(g.decode_ms_per_step, 3),
        f(g.decode_tokens_per_s, 1),
        g.decode_mj_per_token
            .map(|e| format!(
                ", {e:.3} mJ/token, {:.3} J/request",
                g.j_per_request.unwrap_or(f64::NAN)
            ))
            .unwrap_or_default()
    ))
}

/// A cell's figures per loop, in its units: an encoder's loop is a batch, a decoder's (a layers
/// cell, which has no generate figures of its own) a decode step, its energy per generated token.
fn loop_line(decoder: bool, latency_ms: Option<f64>, rate: Option<f64>, mj: Option<f64>) -> String {
    let (per_loop, per_s, per_item) = if decoder {
        ("ms/decode step", "tokens/s", "mJ/generated token")
    } else {
        ("ms/batch", "samples/s", "mJ/inference")
    };
    format!(
        "{:.3} {per_loop}, {:.1} {per_s}{}",
        latency_ms.unwrap_or(f64::NAN),
        rate.unwrap_or(f64::NAN),
        mj.map(|e| format!(", {e:.2} {per_item}"))
            .unwrap_or_default()
    )
}

pub(super) fn cell_result_line(r: &CellRecord) -> String {
    let label = cell_label(&r.cell);
    match r.status {
        CellStatus::Ok => {
            let s = crate::analysis::summarize(r);
            if let Some(line) = generate_line(&s) {
                return format!("done    {label}: {line}");
            }
            let figures = loop_line(
                r.cell.prompt_len.is_some(),
                s.latency_per_loop_ms,
                s.throughput_samples_per_s,
                s.energy_per_inference_mj,
            );
            format!("done    {label}: {figures}")
        }
        CellStatus::Skipped => format!(
            "skipped {label}: {}",
            r.reason.as_deref().unwrap_or_default()
        ),
        CellStatus::Failed => format!(
            "FAILED  {label}: {}",
            r.reason.as_deref().unwrap_or_default()
        ),
    }
}

/// The run's progress: a bar on a terminal, whose ETA comes from the run's estimate (not from
/// the bar's own rate, which read "0s" before the first cell and grew without bound inside a
/// long one); without a terminal (CI logs, `nohup`), a line every [`QUIET_LINE_S`] seconds.
pub(super) struct Progress {
    pub(super) bar: ProgressBar,
    state: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

struct Status {
    estimate: Estimate,
    /// Index (among the cells to measure) of the cell in progress, and when it started.
    current: usize,
    started: Instant,
    cells: usize,
}

/// Seconds between progress lines when there is no terminal to draw a bar on.
pub(super) const QUIET_LINE_S: u64 = 30;

impl Progress {
    pub(super) fn new(cells: usize, estimate: Estimate) -> Self {
        let bar = ProgressBar::new(cells as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cells, ETA {prefix}  {wide_msg}",
            )
            .expect("the progress template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let state = Arc::new(Mutex::new(Status {
            estimate,
            current: 0,
            started: Instant::now(),
            cells,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (bar, state, stop) = (bar.clone(), state.clone(), stop.clone());
            let every = Duration::from_secs(QUIET_LINE_S);
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || tick(&bar, &state, &stop, every, &|line| tell!("{line}")))
                .ok()
        };
        let progress = Self {
            bar,
            state,
            stop,
            ticker,
        };
        progress.update_eta();
        progress
    }

    /// Cell `i` of the cells to measure starts.
    pub(super) fn start_cell(&self, i: usize, label: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.current = i;
            s.started = Instant::now();
        }
        self.bar.set_message(label.to_string());
        self.update_eta();
    }

    /// Cell `i` ended: its time refines the estimate of the cells left.
    pub(super) fn finish_cell(&self, i: usize) {
        if let Ok(mut s) = self.state.lock() {
            let took = s.started.elapsed().as_secs_f64();
            s.estimate.finished(i, took);
            s.current = i + 1;
            s.started = Instant::now();
        }
        self.bar.inc(1);
        self.update_eta();
    }

    fn update_eta(&self) {
        if let Ok(s) = self.state.lock() {
            self.bar.set_prefix(eta_text(&s));
        }
    }

    /// The estimate made before the first cell, seconds.
    pub(super) fn initial_estimate_s(&self) -> f64 {
        self.state.lock().map_or(f64::NAN, |s| s.estimate.initial_s)
    }

    pub(super) fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

fn eta_text(s: &Status) -> String {
    let left = s
        .estimate
        .remaining_s(s.current, s.started.elapsed().as_secs_f64());
    format!("~{}", super::plan::human_duration(left))
}

/// Four times a second: the bar's ETA; without a terminal, a line (to `emit`) every `every`.
fn tick(
    bar: &ProgressBar,
    state: &Mutex<Status>,
    stop: &AtomicBool,
    every: Duration,
    emit: &dyn Fn(&str),
) {
    let start = Instant::now();
    let mut last_line = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250).min(every));
        let Ok(s) = state.lock() else { return };
        bar.set_prefix(eta_text(&s));
        if bar.is_hidden() && last_line.elapsed() >= every {
            last_line = Instant::now();
            emit(&format!(
                "runner: progress {} elapsed, cell {} of {}: {}; ETA {}",
                super::plan::human_duration(start.elapsed().as_secs_f64()),
                (s.current + 1).min(s.cells),
                s.cells,
                bar.message(),
                eta_text(&s)
            ));
        }
    }
}

/// A line for the user that does not tear the progress bar (and still appears without a TTY).
pub(super) fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        tell!("{line}");
    } else {
        bar.println(line);
    }
}

pub fn print_written(written: &report::Written) {
    say!("report: {}", written.html.display());
    say!("        {}", written.markdown.display());
    say!("        {}", written.summary_csv.display());
}

pub fn print_summary(summaries: &[CellSummary]) {
    let (decoders, encoders): (Vec<&CellSummary>, Vec<&CellSummary>) =
        summaries.iter().partition(|s| {
            s.generate.is_some() || (s.reason.is_some() && is_decoder_row(s, summaries))
        });
    if !decoders.is_empty() {
        println!("{}", decoder_table(&decoders));
        if encoders.is_empty() {
            return;
        }
    }
    say!("{}", encoder_table(&encoders));
}

fn encoder_table(rows: &[&CellSummary]) -> comfy_table::Table {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let header = [
        "cell",
        "model",
        "precision",
        "batch",
        "seq",
        "status",
        "ms/batch [95% CI]",
        "samples/s",
        "mJ/inference",
    ];
    let extra = varying_beyond_shape(rows);
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(with_extra_columns(&header, &extra));
    let opt = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    for s in rows {
        let latency = match (
            s.latency_per_loop_ms,
            s.latency_ci_low_ms,
            s.latency_ci_high_ms,
        ) {
            (Some(m), Some(lo), Some(hi)) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
            (m, _, _) => opt(m, 3),
        };
        let row = vec![
            s.id.clone(),
            s.model.clone(),
            s.precision.clone(),
            s.batch_size.to_string(),
            s.seq_len.to_string(),
            match s.status {
                CellStatus::Ok => "ok".to_string(),
                CellStatus::Skipped => "skipped".to_string(),
                CellStatus::Failed => "FAILED".to_string(),
            },
            latency,
            opt(s.throughput_samples_per_s, 1),
            opt(s.energy_per_inference_mj, 2),
        ];
        table.add_row(with_extra_values(row, 5, s, &extra));
    }
    table
}

/// A row without measurements is a decoder's when its model's other cells are (a skipped or
/// failed decoder cell has no generate figures to say so).
fn is_decoder_row(s: &CellSummary, all: &[CellSummary]) -> bool {
    all.iter()
        .any(|o| o.model == s.model && o.generate.is_some())
}

fn decoder_table(rows: &[&CellSummary]) -> comfy_table::Table {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let extra = varying_beyond_shape(rows);
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(with_extra_columns(
            &[
                "cell",
                "model",
                "precision",
                "batch",
                "prompt+new",
                "status",
                "prefill ms",
                "ms/step [95% CI]",
                "tokens/s",
                "mJ/token",
                "J/request",
            ],
            &extra,
        ));
    let opt = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    for s in rows {
        let g = s.generate.as_ref();
        let step = match (
            s.latency_per_loop_ms,
            s.latency_ci_low_ms,
            s.latency_ci_high_ms,
        ) {
            (Some(m), Some(lo), Some(hi)) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
            (m, _, _) => opt(m, 3),
        };
        let row = vec![
            s.id.clone(),
            s.model.clone(),
            s.precision.clone(),
            s.batch_size.to_string(),
            format!(
                "{}+{}",
                s.prompt_len.unwrap_or(0),
                s.new_tokens.unwrap_or(0)
            ),
            match s.status {
                CellStatus::Ok => "ok".to_string(),
                CellStatus::Skipped => "skipped".to_string(),
                CellStatus::Failed => "FAILED".to_string(),
            },
            opt(g.and_then(|g| g.prefill_ms), 3),
            step,
            opt(g.and_then(|g| g.decode_tokens_per_s), 1),
            opt(g.and_then(|g| g.decode_mj_per_token), 3),
            opt(g.and_then(|g| g.j_per_request), 3),
        ];
        table.add_row(with_extra_values(row, 5, s, &extra));
    }
    table
}

/// The failed and skipped cells, with their reasons, at the end of a run.
pub fn list_unsuccessful(summaries: &[CellSummary]) {
    for (status, title) in [
        (CellStatus::Failed, "failed"),
        (CellStatus::Skipped, "skipped"),
    ] {
        let cells: Vec<&CellSummary> = summaries.iter().filter(|s| s.status == status).collect();
        if cells.is_empty() {
            continue;
        }
        tell!("{} cell(s) {title}:", cells.len());
        for s in cells {
            tell!(
                "  {} {} {} batch {} {}{}: {}",
                s.id,
                s.model,
                s.precision,
                s.batch_size,
                match (s.prompt_len, s.new_tokens) {
                    (Some(p), Some(n)) => format!("prompt {p} + {n} tokens"),
                    _ => format!("seq {}", s.seq_len),
                },
                beyond_shape(&s.cell),
                s.reason.as_deref().unwrap_or("")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LayerMethod, Precision, ProtocolSection, QuantizeSelection, Scope};

    struct Fixed;
    impl super::super::estimate::CellCost for Fixed {
        fn unit_loops_s(&self, _: &Cell) -> Vec<f64> {
            vec![0.01]
        }
        fn outside_s(&self, _: &Cell, _: bool) -> f64 {
            0.0
        }
        fn basis(&self) -> String {
            "fixed".into()
        }
    }

    #[test]
    fn cells_differing_in_scope_quantize_or_method_print_apart() {
        let summary = |scope: Scope, method: LayerMethod, quantize: &str| {
            let mut r = crate::analysis::tests::record_with_energy(vec![(1.0, 10, 1.0, 1.0)], None);
            r.cell.precision = Precision::parse("q8_0").unwrap();
            r.cell.scope = scope;
            r.cell.layer_method = method;
            r.cell.quantize = QuantizeSelection::parse(quantize).unwrap();
            crate::analysis::summarize(&r)
        };
        let cells = [
            summary(Scope::Model, LayerMethod::Isolated, "all"),
            summary(Scope::Model, LayerMethod::Isolated, "ffn"),
            summary(Scope::Layers, LayerMethod::Isolated, "all"),
            summary(Scope::Layers, LayerMethod::Prefix, "all"),
        ];
        let labels: Vec<String> = cells.iter().map(|s| cell_label(&s.cell)).collect();
        assert_eq!(
            labels,
            [
                "abc m q8_0 b4 s128 quantize=all",
                "abc m q8_0 b4 s128 quantize=ffn",
                "abc m q8_0 b4 s128 layers quantize=all method=isolated",
                "abc m q8_0 b4 s128 layers quantize=all method=prefix",
            ]
        );
        let rows: Vec<&CellSummary> = cells.iter().collect();
        let table = encoder_table(&rows).to_string();
        let lines: Vec<&str> = table.lines().filter(|l| l.contains("abc")).collect();
        assert_eq!(lines.len(), 4, "{table}");
        for (i, a) in lines.iter().enumerate() {
            assert!(lines[i + 1..].iter().all(|b| a != b), "{table}");
        }
        assert!(table.contains("layer method"), "{table}");
    }

    #[test]
    fn a_loop_line_is_in_the_units_of_the_cells_loop() {
        assert_eq!(
            loop_line(false, Some(7.25), Some(137.9), Some(12.5)),
            "7.250 ms/batch, 137.9 samples/s, 12.50 mJ/inference"
        );
        // A decoder's layers cell: a loop is a decode step (session 6's console said ms/batch).
        assert_eq!(
            loop_line(true, Some(0.515), Some(1942.5), Some(76.85)),
            "0.515 ms/decode step, 1942.5 tokens/s, 76.85 mJ/generated token"
        );
        assert_eq!(
            loop_line(true, None, None, None),
            "NaN ms/decode step, NaN tokens/s"
        );
    }

    #[test]
    fn without_a_terminal_a_progress_line_comes_every_interval_with_a_bounded_eta() {
        let cell = Cell {
            id: "c".into(),
            model: "m".into(),
            precision: Precision::Fp32,
            batch_size: 1,
            seq_len: 8,
            prompt_len: None,
            new_tokens: None,
            scope: Scope::Model,
            quantize: QuantizeSelection::All,
            layer_method: LayerMethod::Isolated,
            prefill_attention: crate::config::PrefillAttention::Plain,
        };
        let p = ProtocolSection {
            repeats: 6,
            ..ProtocolSection::default()
        };
        let estimate = Estimate::new(&[&cell, &cell], &Fixed, &p, super::super::WindowFloor::NONE);
        let initial = estimate.initial_s;
        let state = Mutex::new(Status {
            estimate,
            current: 0,
            // Far past its estimate: the ETA stays what the other cell costs plus a second.
            started: Instant::now() - Duration::from_secs(10_000),
            cells: 2,
        });
        let bar = ProgressBar::hidden();
        bar.set_message("c m fp32 b1 s8: window 2/6");
        let stop = AtomicBool::new(false);
        let lines = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                tick(&bar, &state, &stop, Duration::from_millis(100), &|l| {
                    lines.lock().unwrap().push(l.to_string())
                })
            });
            std::thread::sleep(Duration::from_millis(450));
            stop.store(true, Ordering::Relaxed);
        });
        let lines = lines.into_inner().unwrap();
        assert!((3..=5).contains(&lines.len()), "{lines:?}");
        let eta = format!(
            "ETA ~{}",
            super::super::plan::human_duration(initial / 2.0 + 1.0)
        );
        assert!(
            lines[0].starts_with("runner: progress ")
                && lines[0].contains("cell 1 of 2: c m fp32 b1 s8: window 2/6; ")
                && lines[0].ends_with(&eta),
            "{lines:?} {eta}"
        );
    }
}
