//! What a run tells the user on the terminal: the progress bar and the lines that must not tear it,
//! one result line per cell, the per-layer breakdown when a `layers` cell ends, the closing summary
//! table, the reports written, and the cells that failed or were skipped.

use indicatif::{ProgressBar, ProgressStyle};

use crate::analysis::{self, CellSummary};
use crate::matrix::Cell;
use crate::report;
use crate::results::{CellRecord, CellStatus};

/// The console breakdown printed when a `layers` cell ends (energy where measured, else latency):
/// the isolated units, and beside each top-level layer its prefix difference when the cell ran
/// that method too (`!` where the two disagree beyond their intervals).
pub(super) fn layer_breakdown(r: &CellRecord) -> String {
    use analysis::methods::{self, Metric};
    let metric = methods::metric_of(r);
    let energy = metric == Metric::Energy;
    let (title, unit) = if energy {
        ("ENERGY", "mJ")
    } else {
        ("LATENCY", "ms")
    };
    let comparison = methods::method_comparison(r);
    let prefix = comparison
        .as_ref()
        .filter(|c| c.prefix_sum.is_some())
        .map(|c| (c.layers.clone(), c.prefix_sum.unwrap_or(f64::NAN)));
    let isolated = !r.layers.is_empty();
    let total = if isolated {
        let totals = analysis::layer_totals(r);
        if energy {
            totals.energy_per_inference_mj.unwrap_or(f64::NAN)
        } else {
            totals.latency_ms
        }
    } else {
        prefix.as_ref().map_or(f64::NAN, |p| p.1)
    };
    let methods_used = match (isolated, prefix.is_some()) {
        (true, true) => "isolated | prefix-differenced; ",
        (false, true) => "prefix-differenced; ",
        _ => "",
    };
    let mut out = format!(
        "{title} BREAKDOWN BY LAYER  ({} {} batch {} seq {}; {methods_used}{})\n",
        r.cell.id,
        r.cell.precision.name(),
        r.cell.batch_size,
        r.cell.seq_len,
        if energy {
            "per inference"
        } else {
            "per batch; energy not measured"
        }
    );
    let prefix_cell = |name: &str| -> String {
        let Some((layers, sum)) = &prefix else {
            return String::new();
        };
        let Some(l) = layers.iter().find(|l| l.name == name) else {
            return String::new();
        };
        let v = l.prefix.map_or(f64::NAN, |e| e.value);
        let flag = if l.disagree == Some(true) { " !" } else { "" };
        let bar = if isolated { " | " } else { "" };
        format!("{bar}{v:>9.3} {unit} ({:>6.2}%){flag}", v / sum * 100.0)
    };
    if isolated {
        for l in &r.layers {
            let s =
                analysis::window_stats(&l.per_call_windows(), r.cell.batch_size, r.idle_power_w);
            let value = if energy {
                s.energy_per_inference_mj
            } else {
                s.latency_median_ms
            };
            let value = value.unwrap_or(f64::NAN);
            // Components are indented under their block, in the same columns.
            let label = match &l.parent {
                Some(_) => format!("  {}", l.name.rsplit('.').next().unwrap_or(&l.name)),
                None => l.name.clone(),
            };
            let k = if l.calls_per_loop > 1 {
                format!(" x{}", l.calls_per_loop)
            } else {
                String::new()
            };
            let beside = if l.parent.is_none() {
                prefix_cell(&l.name)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  {label:<25}: {value:>9.3} {unit} ({:>6.2}%){beside}{k}\n",
                value / total * 100.0
            ));
        }
    } else if let Some((layers, _)) = &prefix {
        for l in layers {
            out.push_str(&format!("  {:<25}: {}\n", l.name, prefix_cell(&l.name)));
        }
    }
    let whole = r.reconciliation.as_ref().map(|rec| {
        let (w, ratio, prefix_ratio) = if energy {
            (
                rec.whole_energy_per_inference_mj,
                rec.energy_ratio,
                rec.prefix_energy_ratio,
            )
        } else {
            (
                Some(rec.whole_latency_ms),
                Some(rec.latency_ratio),
                rec.prefix_latency_ratio,
            )
        };
        let iso = if isolated {
            format!(" (Σ/whole {:.1}%)", ratio.unwrap_or(f64::NAN) * 100.0)
        } else {
            String::new()
        };
        let pre = prefix_ratio
            .map(|p| format!(" (prefix Σ/whole {:.1}%)", p * 100.0))
            .unwrap_or_default();
        format!(
            "   whole model: {:.3} {unit}{iso}{pre}",
            w.unwrap_or(f64::NAN)
        )
    });
    let total_beside = match (&prefix, isolated) {
        (Some((_, sum)), true) => format!(" | {sum:>9.3} {unit} (100.00%)"),
        _ => String::new(),
    };
    out.push_str(&format!(
        "  {:<25}: {total:>9.3} {unit} (100.00%){total_beside}{}",
        "TOTAL",
        whole.unwrap_or_default()
    ));
    if let Some(c) = comparison.filter(|c| !c.disagreeing.is_empty()) {
        out.push_str(&format!(
            "\n  ! isolated and prefix-differenced disagree beyond their intervals: {}",
            c.disagreeing.join(", ")
        ));
    }
    out
}

pub(super) fn cell_label(cell: &Cell) -> String {
    format!(
        "{} {} {} b{} s{}",
        cell.id,
        cell.model,
        cell.precision.name(),
        cell.batch_size,
        cell.seq_len
    )
}

pub(super) fn cell_result_line(r: &CellRecord) -> String {
    let label = cell_label(&r.cell);
    match r.status {
        CellStatus::Ok => {
            let s = analysis::summarize(r);
            format!(
                "done    {label}: {:.3} ms/batch, {:.1} samples/s{}",
                s.latency_per_loop_ms.unwrap_or(f64::NAN),
                s.throughput_samples_per_s.unwrap_or(f64::NAN),
                s.energy_per_inference_mj
                    .map(|e| format!(", {e:.2} mJ/inference"))
                    .unwrap_or_default()
            )
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

pub(super) fn progress_bar(cells: usize) -> ProgressBar {
    let bar = ProgressBar::new(cells as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cells, ETA {eta}  {wide_msg}",
        )
        .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
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
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "cell",
        "model",
        "precision",
        "batch",
        "seq",
        "status",
        "ms/batch [95% CI]",
        "samples/s",
        "mJ/inference",
    ]);
    let opt = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    for s in summaries {
        let latency = match (
            s.latency_per_loop_ms,
            s.latency_ci_low_ms,
            s.latency_ci_high_ms,
        ) {
            (Some(m), Some(lo), Some(hi)) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
            (m, _, _) => opt(m, 3),
        };
        table.add_row(vec![
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
        ]);
    }
    say!("{table}");
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
                "  {} {} {} batch {} seq {}: {}",
                s.id,
                s.model,
                s.precision,
                s.batch_size,
                s.seq_len,
                s.reason.as_deref().unwrap_or("")
            );
        }
    }
}
