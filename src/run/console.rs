//! What a run tells the user on the terminal: the progress bar and the lines that must not tear it,
//! one result line per cell, the per-layer breakdown when a `layers` cell ends, the closing summary
//! table, the reports written, and the cells that failed or were skipped.

use indicatif::{ProgressBar, ProgressStyle};

use crate::analysis::{self, CellSummary};
use crate::matrix::Cell;
use crate::report;
use crate::results::{CellRecord, CellStatus};

/// The console breakdown printed when a `layers` cell ends (energy where measured, else latency).
pub(super) fn layer_breakdown(r: &CellRecord) -> String {
    let totals = analysis::layer_totals(r);
    let energy = totals.energy_per_inference_mj.is_some();
    let (title, unit, total) = if energy {
        (
            "ENERGY",
            "mJ",
            totals.energy_per_inference_mj.unwrap_or_default(),
        )
    } else {
        ("LATENCY", "ms", totals.latency_ms)
    };
    let mut out = format!(
        "{title} BREAKDOWN BY LAYER  ({} {} batch {} seq {}; {})\n",
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
    for l in &r.layers {
        let s = analysis::window_stats(&l.windows, r.cell.batch_size, r.idle_power_w);
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
        out.push_str(&format!(
            "  {label:<25}: {value:>9.3} {unit} ({:>6.2}%)\n",
            value / total * 100.0
        ));
    }
    let whole = r.reconciliation.as_ref().map(|rec| {
        let (w, ratio) = if energy {
            (rec.whole_energy_per_inference_mj, rec.energy_ratio)
        } else {
            (Some(rec.whole_latency_ms), Some(rec.latency_ratio))
        };
        format!(
            "   whole model: {:.3} {unit} (Σ/whole {:.1}%)",
            w.unwrap_or(f64::NAN),
            ratio.unwrap_or(f64::NAN) * 100.0
        )
    });
    out.push_str(&format!(
        "  {:<25}: {total:>9.3} {unit} (100.00%){}",
        "TOTAL",
        whole.unwrap_or_default()
    ));
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
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

pub fn print_written(written: &report::Written) {
    println!("report: {}", written.html.display());
    println!("        {}", written.markdown.display());
    println!("        {}", written.summary_csv.display());
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
    println!("{table}");
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
        eprintln!("{} cell(s) {title}:", cells.len());
        for s in cells {
            eprintln!(
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
