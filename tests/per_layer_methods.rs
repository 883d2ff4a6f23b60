//! `layer_method = "both"` on the CPU: isolated units and prefix differencing in one layers cell,
//! reconciled with the whole-model cell of the same run. A test binary of its own, so no other
//! test of this crate competes for the cores while it times (the machine may still be loaded).
//!
//! What is asserted, and why these bounds:
//! - Prefix differencing telescopes: Σ of the per-layer differences equals the longest prefix
//!   (the whole forward pass, measured inside the layers cell) exactly, up to float rounding.
//!   This holds by construction on any machine, loaded or not, and is always asserted.
//! - The longest prefix runs exactly the code of the whole-model cell, in separate windows of the
//!   same run: their medians agree within ±10 %; Σ isolated units within ±20 % of the whole (the
//!   bound tests/per_layer.rs states for the CPU: each unit alone is synchronous, K = 1, and
//!   works on caches a full pass would have evicted). The issue's ±3 % target is for energy on a
//!   GPU, with K calls per loop. Both are timing comparisons across seconds: on a 2-core machine
//!   running other builds (load average 4, measured while writing this test) a unit measured
//!   during a compile is several times slower than one measured between them (a longest prefix at
//!   0.6 x the whole model), which no tolerance separates from a real error. So they are asserted
//!   only when the machine was otherwise idle around the run (1-minute load average below half a
//!   core per core before and after), and otherwise reported as skipped, with the figures, in
//!   the list scripts/test.sh prints at the end.

mod common;
use common::*;

use runner::analysis::methods::{method_comparison, Metric};
use runner::results::CellRecord;

const PREFIX_VS_WHOLE: f64 = 0.10;

/// The tests of this binary run one at a time: the harness runs them on parallel threads, and a
/// cell timed while the other test's run holds the cores came out at 0.2-0.7x the whole model
/// on an otherwise idle 2-core machine (the load average before and after does not see it).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
const ISOLATED_VS_WHOLE: f64 = 0.20;

fn records(run: &std::path::Path) -> Vec<CellRecord> {
    std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

#[test]
fn both_methods_run_side_by_side_and_add_up_to_the_whole_model() {
    let _alone = one_at_a_time();
    let toml = format!(
        "[experiment]\nname = \"methods\"\n{}{}[matrix]\nprecision = [\"fp32\"]\nbatch_size = [8]\nseq_len = [32]\nscope = [\"model\", \"layers\"]\nlayer_method = [\"both\"]\n",
        common_tables(),
        FAST_PROTOCOL.replace("min_window_s = 0.05", "min_window_s = 0.3")
    );
    let f = Fixture::new(&toml);
    let plan = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    let listing = stdout_of(&plan);
    assert!(listing.contains("METHOD"), "{listing}");
    // A model cell has no layer method: `-`; the layers cell says `both`.
    assert!(
        listing
            .lines()
            .any(|l| l.contains("model ") && l.ends_with('-')),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains("layers") && l.ends_with("both")),
        "{listing}"
    );

    let run = f.dir.path().join("run");
    let load_before = load_per_core();
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("LATENCY BREAKDOWN BY LAYER")
            && stderr.contains("isolated | prefix-differenced"),
        "{stderr}"
    );
    assert!(stderr.contains("prefix Σ/whole"), "{stderr}");

    let all = records(&run);
    let layers = all
        .iter()
        .find(|r| !r.prefixes.is_empty())
        .expect("a layers cell");
    let whole = all
        .iter()
        .find(|r| r.layers.is_empty() && r.prefixes.is_empty())
        .unwrap();
    // Embeddings, two blocks, pre-classifier, classifier: one prefix each, shortest first.
    let names: Vec<&str> = layers.prefixes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "embeddings",
            "transformer_block_0",
            "transformer_block_1",
            "pre_classifier",
            "classifier"
        ]
    );
    assert!(layers
        .prefixes
        .iter()
        .enumerate()
        .all(|(i, p)| p.layers == i + 1));
    // The CPU is synchronous: one call per loop, and the record says so.
    assert!(!layers.layers.is_empty());
    assert!(layers.layers.iter().all(|l| l.calls_per_loop == 1));

    let c = method_comparison(layers).unwrap();
    assert_eq!(c.metric, Metric::Latency, "no energy on the CPU");
    assert_eq!(c.method, "both");
    let longest = runner::analysis::methods::prefix_whole(layers, c.metric)
        .unwrap()
        .value;
    let prefix_sum = c.prefix_sum.unwrap();
    assert!(
        (prefix_sum - longest).abs() <= 1e-9 * longest,
        "prefix differences telescope: Σ {prefix_sum} vs longest prefix {longest}"
    );
    // Every top-level layer has a value by each method.
    assert_eq!(c.layers.len(), 5);
    assert!(c
        .layers
        .iter()
        .all(|l| l.isolated.is_some() && l.prefix.is_some()));

    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("## Which layers to quantize"), "{md}");
    assert!(md.contains("### Layers by two methods"), "{md}");

    let rec = runner::analysis::reconcile(layers, whole).unwrap();
    let prefix_ratio = rec.prefix_latency_ratio.unwrap();
    let figures = format!(
        "longest prefix / whole model: {prefix_ratio:.3}; Σ isolated / whole: {:.3}",
        rec.latency_ratio
    );
    eprintln!("{figures}");
    let load = load_per_core();
    let quiet = load_before < QUIET_LOAD && load < QUIET_LOAD;
    if !quiet {
        skipped(
            "per_layer_methods::both_methods_run_side_by_side_and_add_up_to_the_whole_model (timing bounds)",
            &format!(
                "the machine was busy (load {load_before:.2} / {load:.2} per core before / after the run, quiet below {QUIET_LOAD}): the timing bounds were not asserted ({figures}); the telescoping and every structural check were"
            ),
        );
        return;
    }
    assert!(
        (prefix_ratio - 1.0).abs() <= PREFIX_VS_WHOLE,
        "longest prefix / whole model = {prefix_ratio:.3}, outside ±{PREFIX_VS_WHOLE}"
    );
    assert!(
        (rec.latency_ratio - 1.0).abs() <= ISOLATED_VS_WHOLE,
        "Σ isolated / whole = {:.3}, outside ±{ISOLATED_VS_WHOLE}",
        rec.latency_ratio
    );
}

#[test]
fn a_prefix_only_cell_reports_its_layers_by_differences() {
    let _alone = one_at_a_time();
    let toml = format!(
        "[experiment]\nname = \"prefix\"\n{}{}[matrix]\nprecision = [\"fp32\"]\nbatch_size = [4]\nseq_len = [16]\nscope = [\"layers\"]\nlayer_method = [\"prefix\"]\n",
        common_tables(),
        FAST_PROTOCOL
    );
    let f = Fixture::new(&toml);
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("prefix-differenced; per batch"), "{stderr}");
    let all = records(&run);
    assert_eq!(all.len(), 1);
    let r = &all[0];
    assert!(r.layers.is_empty(), "no isolated units");
    assert_eq!(r.prefixes.len(), 5);
    // The cell's own figure is its layers' sum: the longest prefix.
    let s = runner::analysis::summarize(r);
    let longest = runner::analysis::methods::prefix_whole(r, Metric::Latency)
        .unwrap()
        .value;
    assert!((s.latency_per_loop_ms.unwrap() - longest).abs() < 1e-12);
}
