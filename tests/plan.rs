//! `runner plan`: matrix expansion with GitHub Actions `strategy.matrix` semantics, checked on the
//! examples of GitHub's documentation ("Running variations of jobs in a workflow"), with their
//! keys mapped onto the runner's axes, and cell-id stability.

mod common;
use common::*;

fn plan(matrix: &str, models: &[&str]) -> (String, Vec<Vec<String>>) {
    let mut toml = format!("[experiment]\nname = \"plan\"\n{}", common_tables());
    for m in models {
        toml.push_str(&format!(
            "\n[models.{m}]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n"
        ));
    }
    toml.push_str(matrix);
    let f = Fixture::new(&toml);
    let out = f.runner().arg("plan").arg(&f.file).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let rows = text
        .lines()
        .skip(1)
        .filter(|l| !l.ends_with(" cells") && !l.starts_with('('))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    (text, rows)
}

/// (model, precision, batch, seq) of each row, ignoring id and scope.
fn cells(rows: &[Vec<String>]) -> Vec<String> {
    rows.iter().map(|r| r[1..5].join(" ")).collect()
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap()
}

#[test]
fn cartesian_product_in_key_order_with_first_axis_outermost() {
    let (text, rows) = plan(
        "[matrix]\nbatch_size = [1, 2]\nprecision = [\"fp32\", \"fp16\", \"bf16\"]\nmodel = [\"tiny\"]\n",
        &[],
    );
    assert_eq!(last_line(&text), "6 cells");
    assert_eq!(
        cells(&rows),
        [
            "tiny fp32 1 128",
            "tiny fp16 1 128",
            "tiny bf16 1 128",
            "tiny fp32 2 128",
            "tiny fp16 2 128",
            "tiny bf16 2 128"
        ]
    );
}

#[test]
fn github_exclude_example_removes_partial_matches() {
    // os: [macos, windows] -> model [a, b]; version: [12, 14, 16] -> batch_size;
    // environment: [staging, production] -> precision [fp32, fp16].
    // exclude {macos, 12, production} and {windows, 16}: 12 - 1 - 2 = 9 jobs.
    let (text, rows) = plan(
        r#"
[matrix]
model = ["a", "b"]
batch_size = [12, 14, 16]
precision = ["fp32", "fp16"]
exclude = [
  { model = "a", batch_size = 12, precision = "fp16" },
  { model = "b", batch_size = 16 },
]
"#,
        &["a", "b"],
    );
    assert_eq!(last_line(&text), "9 cells");
    let c = cells(&rows);
    assert!(!c.contains(&"a fp16 12 128".to_string()));
    assert!(c.contains(&"a fp32 12 128".to_string()));
    assert!(!c.iter().any(|r| r.starts_with("b ") && r.contains(" 16 ")));
}

#[test]
fn github_include_example_extends_matching_combinations_and_appends_the_rest() {
    // fruit: [apple, pear] -> model [a, b]; animal: [cat, dog] -> precision [fp16, fp32];
    // color -> batch_size (green 8, pink 16); shape circle -> seq_len 64; banana -> model c.
    // GitHub's result: {apple,cat,pink,circle} {apple,dog,green,circle} {pear,cat,pink}
    // {pear,dog,green} {banana} {banana,cat}: 6 jobs.
    let (text, rows) = plan(
        r#"
[matrix]
model = ["a", "b"]
precision = ["fp16", "fp32"]
include = [
  { batch_size = 8 },
  { batch_size = 16, precision = "fp16" },
  { model = "a", seq_len = 64 },
  { model = "c" },
  { model = "c", precision = "fp16" },
]
"#,
        &["a", "b", "c"],
    );
    assert_eq!(last_line(&text), "6 cells");
    assert_eq!(
        cells(&rows),
        [
            "a fp16 16 64",
            "a fp32 8 64",
            "b fp16 16 128",
            "b fp32 8 128",
            // Keys an appended combination lacks take the built-in defaults.
            "c fp32 1 128",
            "c fp16 1 128",
        ]
    );
}

#[test]
fn github_include_adds_a_key_to_one_combination() {
    // os: [windows, ubuntu] -> model [a, b]; node: [14, 16] -> batch_size;
    // include {windows, node 16, npm 6} -> seq_len 64 on that one job: 4 jobs.
    let (text, rows) = plan(
        r#"
[matrix]
model = ["a", "b"]
batch_size = [14, 16]
include = [{ model = "a", batch_size = 16, seq_len = 64 }]
"#,
        &["a", "b"],
    );
    assert_eq!(last_line(&text), "4 cells");
    assert_eq!(
        cells(&rows),
        [
            "a fp32 14 128",
            "a fp32 16 64",
            "b fp32 14 128",
            "b fp32 16 128"
        ]
    );
}

#[test]
fn github_include_with_new_values_appends_a_combination() {
    // os: 3 values x version: [10, 12, 14], include {windows, version 17}: 10 jobs.
    let (text, rows) = plan(
        r#"
[matrix]
model = ["a", "b", "c"]
batch_size = [10, 12, 14]
include = [{ model = "b", batch_size = 17 }]
"#,
        &["a", "b", "c"],
    );
    assert_eq!(last_line(&text), "10 cells");
    assert_eq!(cells(&rows).last().unwrap(), "b fp32 17 128");
}

#[test]
fn github_include_only_matrix_runs_exactly_the_entries() {
    // A matrix of only `include` entries: one job per entry.
    let (text, rows) = plan(
        r#"
[matrix]
include = [
  { model = "a", precision = "fp16" },
  { model = "b", precision = "bf16", batch_size = 4 },
]
"#,
        &["a", "b"],
    );
    assert_eq!(last_line(&text), "2 cells");
    assert_eq!(cells(&rows), ["a fp16 1 128", "b bf16 4 128"]);
}

#[test]
fn include_can_add_back_an_excluded_combination() {
    let (text, rows) = plan(
        r#"
[matrix]
precision = ["fp32", "fp16"]
batch_size = [1, 2]
exclude = [{ precision = "fp16" }]
include = [{ precision = "fp16", batch_size = 2 }]
"#,
        &[],
    );
    assert_eq!(last_line(&text), "3 cells");
    assert_eq!(
        cells(&rows),
        ["tiny fp32 1 128", "tiny fp32 2 128", "tiny fp16 2 128"]
    );
}

#[test]
fn duplicate_combinations_are_merged_and_said() {
    let (text, rows) = plan(
        "[matrix]\nprecision = [\"fp32\"]\ninclude = [{ precision = \"fp16\" }, { precision = \"fp16\" }]\n",
        &[],
    );
    assert_eq!(rows.len(), 2);
    assert!(
        text.contains("(1 duplicate combination(s) merged)"),
        "{text}"
    );
    assert_eq!(last_line(&text), "2 cells");
}

#[test]
fn cell_ids_do_not_depend_on_position_or_other_cells() {
    let id_of =
        |rows: &[Vec<String>], batch: &str| rows.iter().find(|r| r[3] == batch).unwrap()[0].clone();
    let (_, a) = plan("[matrix]\nbatch_size = [1, 8]\n", &[]);
    let (_, b) = plan("[matrix]\nbatch_size = [32, 8, 1, 4]\n", &[]);
    assert_eq!(id_of(&a, "8"), id_of(&b, "8"));
    assert_eq!(id_of(&a, "1"), id_of(&b, "1"));
    assert_ne!(id_of(&a, "1"), id_of(&a, "8"));
    assert!(a.iter().all(|r| r[0].len() == 12));
    // A protocol change is a different measurement: a different id.
    let (_, c) = plan("[protocol]\nrepeats = 5\n[matrix]\nbatch_size = [8]\n", &[]);
    assert_ne!(id_of(&a, "8"), id_of(&c, "8"));
}

#[test]
fn the_flagship_plan_counts_its_cells() {
    let out = assert_cmd::Command::cargo_bin("runner")
        .unwrap()
        .current_dir(repo(""))
        .args(["plan", "experiments/quantization_sweep.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // 8 precisions (fp32, fp16, bf16, int8-fp16, fp8-fp16, three GGML formats) x 5 batch sizes.
    assert_eq!(last_line(&stdout_of(&out)), "40 cells");
}

#[test]
fn set_overrides_reach_the_matrix() {
    let out = assert_cmd::Command::cargo_bin("runner")
        .unwrap()
        .current_dir(repo(""))
        .args([
            "plan",
            "experiments/quantization_sweep.toml",
            "--set",
            "matrix.batch_size=[8,16]",
            "--set",
            "matrix.precision=[\"bf16\"]",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(last_line(&stdout_of(&out)), "2 cells");
}

/// A decoder's layers cell measures, per phase, each of its layers, their halves, the
/// embeddings and the head alone and a prefix per layer, each through the whole protocol:
/// llama-tiny's 2 layers by both methods are 2 x (8 + 4) units of (1 s of warm-up and 2
/// windows of 1 s), 72 s, not the one layer's 48 s the bound counted before it read the depth.
#[test]
fn the_plans_least_time_counts_every_unit_of_a_decoders_layers_cell() {
    let f = decoder_experiment(
        "least",
        "[models.own]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n",
        "precision = [\"fp32\"]\nbatch_size = [1]\nprompt_len = [8]\nnew_tokens = [4]\nscope = [\"layers\"]\nlayer_method = [\"both\"]",
    );
    let text = std::fs::read_to_string(&f.file).unwrap().replace(
        FAST_PROTOCOL,
        "[protocol]\nwarmup_s = 1.0\nstabilize_s = 0.0\nmin_window_s = 1.0\nrepeats = 2\ncooldown_s = 0.0\n",
    );
    std::fs::write(&f.file, text).unwrap();
    let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    let stdout = stdout_of(&out);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout.contains(
            "the protocol alone takes at least 72 s for 1 cell(s) (warm-ups, windows, pauses;"
        ),
        "{stdout}"
    );
    // On the CPU no energy counter stretches a window.
    assert!(!stdout.contains("NVML"), "{stdout}");
}
