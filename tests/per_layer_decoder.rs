//! Per-layer energy of a decoder (the runner's own Llama-family decoder), prefill and decode
//! apart, both methods, through the real binary on the CPU: the units and prefixes recorded per
//! phase, per_layer.csv and the report per phase and per token, each phase reconciled with the
//! whole-model cell's own windows of that phase; candle-transformers' decoders skipped with
//! their reason. A test binary of its own, so no other test of this crate competes for the
//! cores while it times.
//!
//! The bounds are tests/per_layer_methods.rs's, for the same reasons: prefix differencing
//! telescopes exactly on any machine (always asserted); the longest prefix against the whole
//! phase within ±10 % and Σ isolated units within ±20 % are timing comparisons across seconds,
//! asserted only when the machine was otherwise idle around the run (1-minute load average
//! below half a core per core before and after), else listed as skipped with the figures.

mod common;
use common::*;

use runner::analysis::methods::{method_comparisons, Metric};
use runner::results::{CellRecord, Phase};

const PREFIX_VS_WHOLE: f64 = 0.10;
const ISOLATED_VS_WHOLE: f64 = 0.20;

fn records(run: &std::path::Path) -> Vec<CellRecord> {
    std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

fn experiment(models: &str, matrix: &str, protocol: &str) -> Fixture {
    Fixture::new(&format!(
        "[experiment]\nname = \"decoder-layers\"\n[device]\nbackend = \"cpu\"\n{protocol}idle_settle_s = 0.0\nidle_baseline_s = 0.0\n\
         [dataset]\npath = \"{}\"\ntokenizer = \"{}\"\nlimit = 64\n{models}\n[matrix]\n{matrix}\n",
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display(),
    ))
}

#[test]
fn a_decoder_is_profiled_per_layer_prefill_and_decode_apart_by_both_methods() {
    let f = experiment(
        "[models.own]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n\
         [models.crate]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n",
        "model = [\"own\", \"crate\"]\nprecision = [\"fp32\"]\nbatch_size = [2]\nprompt_len = [16]\nnew_tokens = [8]\nscope = [\"model\", \"layers\"]\nlayer_method = [\"both\"]",
        &FAST_PROTOCOL.replace("min_window_s = 0.05", "min_window_s = 0.3"),
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
    for phase in ["prefill prompt 16+8", "decode prompt 16+8"] {
        assert!(stderr.contains(phase), "{phase}: {stderr}");
    }
    assert!(stderr.contains("isolated | prefix-differenced"), "{stderr}");

    let all = records(&run);
    let find = |model: &str, layers: bool| {
        all.iter()
            .find(|r| {
                r.cell.model == model && (r.cell.scope == runner::config::Scope::Layers) == layers
            })
            .unwrap_or_else(|| panic!("no {model} record (layers: {layers})"))
    };
    // candle-transformers' decoders keep their layers private: skipped, saying what runs.
    let skipped_cell = find("crate", true);
    assert_eq!(
        skipped_cell.status,
        runner::results::CellStatus::Skipped,
        "{:?}",
        skipped_cell.reason
    );
    assert!(skipped_cell
        .reason
        .as_deref()
        .unwrap()
        .contains("implementation = \"own\""));

    let layers = find("own", true);
    let whole = find("own", false);
    assert_eq!(
        layers.status,
        runner::results::CellStatus::Ok,
        "{:?}",
        layers.reason
    );
    let mut expected = vec!["embeddings".to_string()];
    for b in 0..2 {
        expected.push(format!("transformer_block_{b}"));
        expected.push(format!("transformer_block_{b}.attention"));
        expected.push(format!("transformer_block_{b}.mlp"));
    }
    expected.push("lm_head".into());
    for phase in Phase::ALL {
        let names: Vec<&str> = layers
            .layers
            .iter()
            .filter(|l| l.phase == Some(phase))
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, expected, "{phase:?}");
        let prefixes: Vec<(usize, &str)> = layers
            .prefixes
            .iter()
            .filter(|p| p.phase == Some(phase))
            .map(|p| (p.layers, p.name.as_str()))
            .collect();
        assert_eq!(
            prefixes,
            [
                (1, "embeddings"),
                (2, "transformer_block_0"),
                (3, "transformer_block_1"),
                (4, "lm_head")
            ],
            "{phase:?}"
        );
    }
    let implementation = layers.implementation.as_ref().unwrap();
    // Not the load-time text of a whole decode step: each unit's record says how it ran.
    assert!(
        implementation["execution"].starts_with("layers cell: each unit and each prefix"),
        "{}",
        implementation["execution"]
    );
    assert!(
        implementation["layers_decode"].contains("position 20 of"),
        "{implementation:?}"
    );
    assert!(implementation["layers_prefill"].contains("positions 0..16"));

    // One comparison per phase; the prefix differences telescope to the longest prefix.
    let comparisons = method_comparisons(layers);
    assert_eq!(
        comparisons.iter().map(|c| c.phase).collect::<Vec<_>>(),
        [Some("prefill"), Some("decode")]
    );
    for c in &comparisons {
        assert_eq!(c.metric, Metric::Latency, "no energy on the CPU");
        assert_eq!(c.layers.len(), 4);
        assert!(c
            .layers
            .iter()
            .all(|l| l.isolated.is_some() && l.prefix.is_some()));
        let longest = c
            .layers
            .iter()
            .map(|l| l.prefix.unwrap().value)
            .sum::<f64>();
        assert!((c.prefix_sum.unwrap() - longest).abs() <= 1e-9 * longest.abs());
    }
    assert_eq!(comparisons[0].per, "prompt token");
    assert_eq!(comparisons[1].per, "generated token");

    // per_layer.csv: every unit of both phases and both methods, saying what a figure is per.
    let csv = std::fs::read_to_string(run.join("per_layer.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header, runner::report::per_layer_columns());
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for (phase, per) in [("prefill", "prompt token"), ("decode", "generated token")] {
        let of_phase: Vec<&Vec<&str>> = rows.iter().filter(|r| r[col("phase")] == phase).collect();
        assert_eq!(of_phase.len(), expected.len() + 4, "{phase}: {csv}");
        assert!(of_phase.iter().all(|r| r[col("energy_per")] == per));
        assert_eq!(
            of_phase
                .iter()
                .filter(|r| r[col("method")] == "prefix")
                .count(),
            4
        );
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("decode · **transformer_block_0**"), "{md}");
    assert!(md.contains("prefill · ↳ transformer_block_1.mlp"), "{md}");
    // The section says what this cell is: a decoder's units per phase, none of an encoder's.
    let section = md_section(&md, "Per-layer breakdown");
    for said in [
        "A decoder, profiled in its 2 phases apart (prefill, decode)",
        "embeddings (the tokens' embeddings looked up); 2 decoder layers, each also measured as its halves attention and mlp",
        "lm_head, the step's tail: the final RMSNorm",
        "Σ layers (the decode step's isolated units): ",
        "| layer | energy mJ per token | energy share | latency ms per call",
    ] {
        assert!(section.contains(said), "{said}: {section}");
    }
    for encoder_word in [
        "An encoder",
        "transformer blocks",
        "classifier",
        "feed-forward network",
        "mJ/inference",
        "ms/batch",
    ] {
        assert!(!section.contains(encoder_word), "{encoder_word}: {section}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("A decoder, profiled in its 2 phases apart"));
    assert!(!html.contains("An encoder: "));
    assert!(md.contains("### Layers by two methods"), "{md}");
    // The heading names the cell on every axis (prompt, new tokens, method), then the phase.
    assert!(
        md.contains("prompt 16 +8 layers method=both, decode"),
        "{md}"
    );

    // Each phase reconciled with the whole-model cell's windows of that phase.
    let rec = layers.reconciliation.as_ref().expect("reconciled");
    assert_eq!(rec.model_cell_id, whole.cell.id);
    assert_eq!(rec.phase, Some(Phase::Decode));
    let prefill = rec
        .prefill
        .as_deref()
        .expect("the prefill's reconciliation");
    assert_eq!(prefill.phase, Some(Phase::Prefill));
    let whole_summary = runner::analysis::generate::summarize(whole).unwrap();
    assert!((rec.whole_latency_ms - whole_summary.decode_ms_per_step.unwrap()).abs() < 1e-9);
    assert!((prefill.whole_latency_ms - whole_summary.prefill_ms.unwrap()).abs() < 1e-9);

    // per_layer.csv and the report state Σ/whole for each phase and each method, each row its
    // own phase's and method's (not the decode step's isolated figure on every row).
    for (phase, r) in [("prefill", prefill), ("decode", rec)] {
        let methods = [
            ("isolated", r.latency_ratio),
            ("prefix", r.prefix_latency_ratio.unwrap()),
        ];
        for (method, ratio) in methods {
            let of: Vec<&Vec<&str>> = rows
                .iter()
                .filter(|row| row[col("phase")] == phase && row[col("method")] == method)
                .collect();
            assert!(!of.is_empty(), "{phase} {method}: {csv}");
            for row in of {
                let value = |c: &str| -> f64 { row[col(c)].parse().unwrap() };
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
                assert!(
                    close(value("layers_vs_whole_latency"), ratio),
                    "{phase} {method}: {} against {ratio}",
                    row[col("layers_vs_whole_latency")]
                );
                assert!(close(value("whole_latency_ms"), r.whole_latency_ms));
                assert!(close(
                    value("layers_sum_latency_ms"),
                    ratio * r.whole_latency_ms
                ));
                let within = (ratio - 1.0).abs() <= runner::analysis::RECONCILIATION_FLAG;
                assert_eq!(
                    row[col("reconciled")],
                    within.to_string(),
                    "{phase} {method}"
                );
                // No energy on the CPU: empty, never zero.
                assert_eq!(row[col("layers_vs_whole_energy")], "");
            }
            // The isolated Σ names its isolation (warm: the default).
            let named = if method == "isolated" {
                "isolated (warm)"
            } else {
                method
            };
            assert!(
                md.contains(&format!("| {phase} | {named} | ")),
                "{phase} {method}: {md}"
            );
        }
    }

    // The run's records read back: `runner report` re-renders it (a decoder's layers cell has
    // no generate section, and is not taken for a damaged record for it).
    let again = f.runner().arg("report").arg(&run).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr_of(&again));

    let figures = format!(
        "decode: longest prefix / whole {:.3}, Σ isolated / whole {:.3}; prefill: {:.3}, {:.3}",
        rec.prefix_latency_ratio.unwrap(),
        rec.latency_ratio,
        prefill.prefix_latency_ratio.unwrap(),
        prefill.latency_ratio
    );
    eprintln!("{figures}");
    let load = load_per_core();
    if !(load_before < QUIET_LOAD && load < QUIET_LOAD) {
        skipped(
            "per_layer_decoder::a_decoder_is_profiled_per_layer_prefill_and_decode_apart_by_both_methods (timing bounds)",
            &format!(
                "the machine was busy (load {load_before:.2} / {load:.2} per core before / after the run, quiet below {QUIET_LOAD}): the timing bounds were not asserted ({figures}); the telescoping and every structural check were"
            ),
        );
        return;
    }
    for r in [rec, prefill] {
        let p = r.prefix_latency_ratio.unwrap();
        assert!(
            (p - 1.0).abs() <= PREFIX_VS_WHOLE,
            "{:?}: longest prefix / whole = {p:.3}, outside ±{PREFIX_VS_WHOLE} ({figures})",
            r.phase
        );
        assert!(
            (r.latency_ratio - 1.0).abs() <= ISOLATED_VS_WHOLE,
            "{:?}: Σ isolated / whole = {:.3}, outside ±{ISOLATED_VS_WHOLE} ({figures})",
            r.phase,
            r.latency_ratio
        );
    }
}

/// A layers cell that ran prefix differencing alone has no isolated units, so the report's
/// per-layer breakdown (which reconciles the others) has no place for it: the report still gives
/// its Σ (the longest prefix) against the whole-model cell for each phase, in both formats, as
/// per_layer.csv does.
#[test]
fn a_prefix_only_layers_cell_is_reconciled_in_the_report() {
    let f = experiment(
        "[models.own]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n",
        "model = [\"own\"]\nprecision = [\"fp32\"]\nbatch_size = [1]\nprompt_len = [16]\nnew_tokens = [8]\nscope = [\"model\", \"layers\"]\nlayer_method = [\"prefix\"]",
        FAST_PROTOCOL,
    );
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let all = records(&run);
    let layers = all
        .iter()
        .find(|r| r.cell.scope == runner::config::Scope::Layers)
        .unwrap();
    let whole = all
        .iter()
        .find(|r| r.cell.scope == runner::config::Scope::Model)
        .unwrap();
    assert!(layers.layers.is_empty() && !layers.prefixes.is_empty());
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    // Both headings name the cell on every axis: new tokens included.
    let id = &layers.cell.id;
    let heading = format!(
        "### Prefix differencing against the whole model: `{id}`, own fp32 b1 prompt 16 +8 layers method=prefix\n"
    );
    assert!(md.contains(&heading), "{md}");
    let heading = format!(
        "### Layers by two methods: `{id}`, own fp32 b1 prompt 16 +8 layers method=prefix, decode\n"
    );
    assert!(md.contains(&heading), "{md}");
    assert!(
        md.contains(&format!("whole-model cell `{}`", whole.cell.id)),
        "{md}"
    );
    for phase in ["prefill", "decode"] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {phase} | prefix | ")))
            .unwrap_or_else(|| panic!("no {phase} prefix row: {md}"));
        // Σ latency, whole, ratio: the ratio is Σ / whole as printed (to its rounding).
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        let (sum, whole_ms): (f64, f64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
        let pct: f64 = cols[5].trim_end_matches(" %").parse().unwrap();
        // Both figures print to 4 decimals (5e-5 ms each), the percentage to 1 (0.05).
        let slack = 0.05 + 100.0 * 1e-4 * (1.0 + sum / whole_ms) / whole_ms;
        assert!(
            (pct - 100.0 * sum / whole_ms).abs() <= slack,
            "{row}: {pct} against {sum} / {whole_ms}"
        );
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("Prefix differencing against the whole model: <code>"),
        "no prefix-only section in report.html"
    );
}
