//! `protocol.layer_isolation`: a decoder's isolated units warm (the same weights every call, the
//! default) or cold (each call on the next of C deep copies of the unit's weights and KV cache,
//! C x its bytes > 2x the device's last-level cache), through the real binary on the CPU: the
//! key validated, each unit's record, per_layer.csv and the report's reconciliation saying
//! which isolation ran and with how many copies of how many bytes against which cache, and a
//! cold cell's id apart from a warm one's. (The timing of cold against warm is a GPU question:
//! docs/results/*-llm-deployed/NOTES.md, "Session 7: per layer".)

mod common;
use common::*;

use runner::results::{CellRecord, Phase};

fn records(run: &std::path::Path) -> Vec<CellRecord> {
    std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

fn experiment(isolation: Option<&str>, models: &str, matrix: &str) -> Fixture {
    let key = isolation.map_or(String::new(), |v| format!("layer_isolation = \"{v}\"\n"));
    Fixture::new(&format!(
        "[experiment]\nname = \"cold\"\n[device]\nbackend = \"cpu\"\n{FAST_PROTOCOL}{key}idle_settle_s = 0.0\nidle_baseline_s = 0.0\n\
         [dataset]\npath = \"{}\"\ntokenizer = \"{}\"\nlimit = 64\n{models}\n[matrix]\n{matrix}\n",
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display(),
    ))
}

const OWN: &str =
    "[models.own]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n";
const MATRIX: &str = "model = [\"own\"]\nprecision = [\"fp32\"]\nbatch_size = [1]\nprompt_len = [16]\nnew_tokens = [8]\nscope = [\"model\", \"layers\"]\nlayer_method = [\"both\"]";

/// Runs the experiment; its records, per_layer.csv and report.md.
fn run(f: &Fixture) -> (Vec<CellRecord>, String, String) {
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let csv = std::fs::read_to_string(run.join("per_layer.csv")).unwrap();
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    (records(&run), csv, md)
}

fn layers_cell(all: &[CellRecord]) -> &CellRecord {
    all.iter()
        .find(|r| r.cell.scope == runner::config::Scope::Layers)
        .expect("a layers record")
}

/// per_layer.csv's isolated rows: (phase, name, isolation, copies, copy bytes, cache bytes).
fn isolated_rows(csv: &str) -> Vec<Vec<String>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header, runner::report::per_layer_columns());
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[col("method")] == "isolated")
        .map(|r| {
            [
                "phase",
                "layer_name",
                "isolation",
                "cold_copies",
                "cold_copy_bytes",
                "cache_bytes",
            ]
            .iter()
            .map(|c| r[col(c)].to_string())
            .collect()
        })
        .collect()
}

#[test]
fn cold_units_rotate_through_copies_larger_than_twice_the_cache_and_say_so() {
    let f = experiment(Some("cold"), OWN, MATRIX);
    let (all, csv, md) = run(&f);
    let layers = layers_cell(&all);
    assert_eq!(
        layers.status,
        runner::results::CellStatus::Ok,
        "{:?}",
        layers.reason
    );
    let implementation = layers.implementation.as_ref().unwrap();
    assert!(
        implementation["layers_isolation"].starts_with("cold (protocol.layer_isolation)"),
        "{implementation:?}"
    );
    let mut cache = None;
    for l in &layers.layers {
        if l.name == "embeddings" {
            // One row of the table a token: no copy makes it cold, and the record says warm.
            assert!(l.cold.is_none(), "{l:?}");
            continue;
        }
        let c = l.cold.unwrap_or_else(|| panic!("{} ran warm", l.name));
        assert!(c.copies >= 1 && c.copy_bytes > 0, "{}: {c:?}", l.name);
        // The device's cache, the same for every unit: read from sysfs, never a constant.
        assert_eq!(*cache.get_or_insert(c.cache_bytes), c.cache_bytes);
        // More than twice the cache, or (a tiny model against a CPU's cache) the cap.
        let total = u64::from(c.copies) * c.copy_bytes;
        assert!(
            total > 2 * c.cache_bytes || c.copies == 256,
            "{}: {c:?}",
            l.name
        );
        // The CPU is synchronous: one call a loop, the rotation running on across loops.
        assert_eq!(l.calls_per_loop, 1, "{}", l.name);
    }
    // A block holds its attention's and its MLP's weights and its layer's KV cache.
    let bytes = |phase: Phase, name: &str| {
        layers
            .layers
            .iter()
            .find(|l| l.phase == Some(phase) && l.name == name)
            .and_then(|l| l.cold)
            .unwrap()
            .copy_bytes
    };
    for phase in Phase::ALL {
        let block = bytes(phase, "transformer_block_0");
        let halves =
            bytes(phase, "transformer_block_0.attention") + bytes(phase, "transformer_block_0.mlp");
        assert_eq!(block, halves, "{phase:?}");
    }
    let sysfs_l3 = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size");
    if let (Ok(text), Some(cache)) = (sysfs_l3, cache) {
        assert!(
            cache
                >= 1024
                    * text
                        .trim()
                        .trim_end_matches('K')
                        .parse::<u64>()
                        .unwrap_or(0)
        );
    }

    // per_layer.csv: each isolated row says what ran; prefix rows leave it empty.
    let rows = isolated_rows(&csv);
    assert_eq!(rows.len(), 2 * 8, "{csv}");
    for r in &rows {
        let (name, isolation) = (&r[1], &r[2]);
        if name == "embeddings" {
            assert_eq!((isolation.as_str(), r[3].as_str()), ("warm", ""), "{r:?}");
        } else {
            assert_eq!(isolation, "cold", "{r:?}");
            assert!(r[3].parse::<u32>().unwrap() >= 1, "{r:?}");
            assert_eq!(r[5].parse::<u64>().ok(), cache, "{r:?}");
        }
    }
    // The section's lead says what cold isolation does (its first sentence says a unit runs alone
    // on its captured input, which a reader would otherwise take for the same weights every call).
    assert!(
        md.contains("each call reads the next of C deep copies"),
        "{md}"
    );
    // The reconciliation table names the isolation of each phase's isolated Σ.
    for phase in ["prefill", "decode"] {
        assert!(
            md.contains(&format!("| {phase} | isolated (cold) | ")),
            "{phase}: {md}"
        );
        assert!(
            md.contains(&format!("| {phase} | prefix | ")),
            "{phase}: {md}"
        );
    }

    // The cold layers cell is another measurement than the warm one: another id; the whole
    // model cell's is the same.
    let warm = experiment(Some("warm"), OWN, MATRIX);
    let plan = |f: &Fixture| {
        let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        stdout_of(&out)
    };
    let (cold_plan, warm_plan) = (plan(&f), plan(&warm));
    let whole_id = &all
        .iter()
        .find(|r| r.cell.scope == runner::config::Scope::Model)
        .unwrap()
        .cell
        .id;
    assert!(cold_plan.contains(&layers.cell.id), "{cold_plan}");
    assert!(!warm_plan.contains(&layers.cell.id), "{warm_plan}");
    assert!(warm_plan.contains(whole_id.as_str()), "{warm_plan}");
}

#[test]
fn warm_is_the_default_and_its_records_are_the_old_ones() {
    let f = experiment(None, OWN, MATRIX);
    let (all, csv, md) = run(&f);
    let layers = layers_cell(&all);
    assert!(layers.layers.iter().all(|l| l.cold.is_none()));
    assert!(layers.implementation.as_ref().unwrap()["layers_isolation"].starts_with("warm"));
    // A warm unit's record has no `cold` key: a record written before the key reads as warm.
    let text = serde_json::to_string(layers).unwrap();
    assert!(!text.contains("\"cold\""), "{text}");
    // Nor a `context` key (in-step's): a record from before it reads as the unit alone.
    assert!(!text.contains("\"context\""), "{text}");
    assert!(isolated_rows(&csv)
        .iter()
        .all(|r| r[2] == "warm" && r[3].is_empty() && r[5].is_empty()));
    assert!(md.contains("| decode | isolated (warm) | "), "{md}");
    assert!(!md.contains("deep copies"), "{md}");
    // The same id as a run that names warm: the key's default changes no id.
    let named = experiment(Some("warm"), OWN, MATRIX);
    let out = named.runner().args(["plan", "exp.toml"]).output().unwrap();
    assert!(
        stdout_of(&out).contains(&layers.cell.id),
        "{}",
        stdout_of(&out)
    );
}

#[test]
fn an_unknown_isolation_is_refused_naming_the_file_and_key() {
    let f = experiment(Some("tepid"), OWN, MATRIX);
    let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for want in ["exp.toml", "layer_isolation", "tepid", "warm", "cold"] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
}

#[test]
fn an_encoders_layers_cell_refuses_cold_naming_the_key() {
    let f = experiment(
        Some("cold"),
        "[models.tiny]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n",
        "model = [\"tiny\"]\nprecision = [\"fp32\"]\nbatch_size = [1]\nseq_len = [8]\nscope = [\"layers\"]",
    );
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let all = records(&run);
    let cell = layers_cell(&all);
    assert_ne!(
        cell.status,
        runner::results::CellStatus::Ok,
        "{}",
        stderr_of(&out)
    );
    let reason = cell.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("protocol.layer_isolation = \"cold\"") && reason.contains("warm"),
        "{reason}"
    );
}
