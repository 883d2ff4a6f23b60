//! `protocol.layer_isolation = "in-step"`: a decoder's isolated units cold (rotating copies of
//! their weights and KV cache), and each top-level unit run after the unit that precedes it in the
//! step, its figures the pair's less that predecessor's own loop; through the real binary on the
//! CPU: each record's predecessor and its own loop, the subtraction, per_layer.csv and the report
//! saying what ran, its own cell id, an encoder refusing it. (Whether it closes the decode step's
//! Σ is a GPU question: docs/results/*-llm-deployed/NOTES.md, "Session 8: per layer".)

mod common;
use common::*;

use runner::results::{CellRecord, Phase};

fn experiment(isolation: &str, models: &str, matrix: &str) -> Fixture {
    Fixture::new(&format!(
        "[experiment]\nname = \"in-step\"\n[device]\nbackend = \"cpu\"\n{FAST_PROTOCOL}layer_isolation = \"{isolation}\"\nidle_settle_s = 0.0\nidle_baseline_s = 0.0\n\
         [dataset]\npath = \"{}\"\ntokenizer = \"{}\"\nlimit = 64\n{models}\n[matrix]\n{matrix}\n",
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display(),
    ))
}

const OWN: &str =
    "[models.own]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n";
const MATRIX: &str = "model = [\"own\"]\nprecision = [\"fp32\"]\nbatch_size = [1]\nprompt_len = [16]\nnew_tokens = [8]\nscope = [\"model\", \"layers\"]\nlayer_method = [\"isolated\"]";

fn records(run: &std::path::Path) -> Vec<CellRecord> {
    std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

fn median(v: Vec<f64>) -> f64 {
    runner::stats::percentile(&v, 50.0)
}

#[test]
fn top_level_units_run_after_their_step_predecessor_and_have_it_subtracted() {
    let f = experiment("in-step", OWN, MATRIX);
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
    assert_eq!(
        layers.status,
        runner::results::CellStatus::Ok,
        "{:?}",
        layers.reason
    );
    assert!(layers.implementation.as_ref().unwrap()["layers_isolation"]
        .starts_with("in-step (protocol.layer_isolation)"));
    for phase in Phase::ALL {
        let of_phase: Vec<_> = layers
            .layers
            .iter()
            .filter(|l| l.phase == Some(phase))
            .collect();
        let predecessor = |name: &str| {
            of_phase
                .iter()
                .find(|l| l.name == name)
                .unwrap()
                .context
                .as_ref()
                .map(|c| c.predecessor.as_str())
        };
        // The step's order, the embeddings after the head (the previous step's tail).
        for (unit, before) in [
            ("embeddings", Some("lm_head")),
            ("transformer_block_0", Some("embeddings")),
            ("transformer_block_1", Some("transformer_block_0")),
            ("lm_head", Some("transformer_block_1")),
            ("transformer_block_0.attention", None),
            ("transformer_block_1.mlp", None),
        ] {
            assert_eq!(predecessor(unit), before, "{phase:?} {unit}");
        }
        for l in &of_phase {
            // Cold as `cold` runs it: every unit but the embeddings on rotating copies.
            assert_eq!(l.cold.is_some(), l.name != "embeddings", "{}", l.name);
            let Some(c) = &l.context else { continue };
            // The predecessor's own loop was measured, with the pair's K, through the protocol.
            assert!(!c.windows.is_empty());
            assert!(l.execution.is_none(), "the CPU runs eagerly");
            // The unit's figures are the pair's less the predecessor's, per call.
            let pair: Vec<f64> = l.windows.iter().flat_map(|w| w.loop_ms.clone()).collect();
            let alone: Vec<f64> = c.windows.iter().flat_map(|w| w.loop_ms.clone()).collect();
            let unit: Vec<f64> = l
                .per_call_windows()
                .iter()
                .flat_map(|w| w.loop_ms.clone())
                .collect();
            let (p, a, u) = (median(pair), median(alone), median(unit));
            assert!(
                (u - (p - a)).abs() <= 1e-9 * p.abs().max(1.0),
                "{}: {u} against {p} - {a}",
                l.name
            );
        }
    }
    let csv = std::fs::read_to_string(run.join("per_layer.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 16, "{csv}");
    for r in &rows {
        let (name, isolation, before) = (
            r[col("layer_name")],
            r[col("isolation")],
            r[col("step_predecessor")],
        );
        if name.contains('.') {
            assert_eq!((isolation, before), ("cold", ""), "{r:?}");
        } else {
            assert_eq!(isolation, "in-step", "{r:?}");
            assert!(!before.is_empty(), "{r:?}");
        }
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("| decode | isolated (in-step) | "), "{md}");
    assert!(
        md.contains("runs after the unit that precedes it in the step"),
        "{md}"
    );
    // Another measurement than cold's: its own layers cell id.
    let cold = experiment("cold", OWN, MATRIX);
    let plan = cold.runner().args(["plan", "exp.toml"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", stderr_of(&plan));
    assert!(!stdout_of(&plan).contains(&layers.cell.id));
}

#[test]
fn an_encoders_layers_cell_refuses_in_step_naming_the_value() {
    let f = experiment(
        "in-step",
        "[models.tiny]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n",
        "model = [\"tiny\"]\nprecision = [\"fp32\"]\nbatch_size = [1]\nseq_len = [8]\nscope = [\"layers\"]",
    );
    let run = f.dir.path().join("run");
    f.runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let all = records(&run);
    let reason = all[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("protocol.layer_isolation = \"in-step\"") && reason.contains("warm"),
        "{reason}"
    );
}
