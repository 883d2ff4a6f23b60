//! Bad inputs: each gets a message naming the file, key or override and saying what to do, and
//! exit code 2, before any model work. The exact messages are insta snapshots
//! (tests/snapshots/), with machine-specific paths replaced by [TMP] and [REPO].

mod common;
use common::*;

#[test]
fn toml_syntax_error_gives_line_and_column() {
    let msg = fails(&format!("{BAD_HEADER}[protocol\nrepeats = 3\n"), &[], &[]);
    insta::assert_snapshot!("syntax_error", msg);
}

#[test]
fn unknown_key_is_named_with_its_full_path() {
    let msg = fails(
        &valid_with("[protocol]\nrepets = 3\n[matrix]\nbatch_size = [1]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("unknown_key", msg);
}

#[test]
fn batch_size_zero_names_the_list_position() {
    let msg = fails(&valid_with("[matrix]\nbatch_size = [1, 0]\n"), &[], &[]);
    insta::assert_snapshot!("batch_size_zero", msg);
}

#[test]
fn unknown_precision_lists_the_known_ones() {
    let msg = fails(
        &valid_with("[matrix]\nprecision = [\"fp32\", \"fp8\"]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("unknown_precision", msg);
}

#[test]
fn a_model_name_that_could_leave_the_run_directory_is_refused() {
    let toml =
        valid_with("[matrix]\nbatch_size = [1]\n").replace("[models.tiny]", "[models.\"../../x\"]");
    let toml = toml.replace("model = [\"tiny\"]", "model = [\"../../x\"]");
    let msg = fails(&toml, &[], &[]);
    insta::assert_snapshot!("model_name_path", msg);
}

#[test]
fn misspelled_precision_gets_a_suggestion() {
    let msg = fails(&valid_with("[matrix]\nprecision = [\"q8\"]\n"), &[], &[]);
    insta::assert_snapshot!("misspelled_precision", msg);
}

#[test]
fn undeclared_model_lists_the_declared_ones() {
    let msg = fails(&valid_with("[matrix]\nmodel = [\"bert\"]\n"), &[], &[]);
    insta::assert_snapshot!("undeclared_model", msg);
}

#[test]
fn seq_len_beyond_position_embeddings() {
    let msg = fails(&valid_with("[matrix]\nseq_len = [128, 1024]\n"), &[], &[]);
    insta::assert_snapshot!("seq_len_too_long", msg);
}

#[test]
fn missing_dataset_and_tokenizer_files_are_both_reported() {
    let toml = format!(
        "{BAD_HEADER}[dataset]\npath = \"nowhere.tsv\"\ntokenizer = \"vocab-missing.txt\"\n\
         [models.tiny]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n[matrix]\nbatch_size = [1]\n"
    );
    let msg = fails(&toml, &[], &[]);
    insta::assert_snapshot!("missing_dataset_and_tokenizer", msg);
}

#[test]
fn missing_experiment_file() {
    let f = Fixture::new("");
    let out = f
        .runner()
        .args(["plan", "no-such-file.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("missing_experiment_file", f.normalize(&stderr_of(&out)));
}

#[test]
fn weights_folder_without_checkpoint_files() {
    let toml = format!(
        "{BAD_HEADER}{}[models.real]\narchitecture = \"distilbert\"\npreset = \"distilbert-base-uncased\"\nweights = \"my-checkpoint\"\n[matrix]\nmodel = [\"real\"]\n",
        common_tables()
    );
    let msg = fails(&toml, &[], &[]);
    insta::assert_snapshot!("weights_folder_incomplete", msg);
}

#[test]
fn impossible_protocol_values_are_all_reported_at_once() {
    let msg = fails(
        &valid_with("[protocol]\nmin_window_s = 0.0\nrepeats = 0\nwarmup_s = -1.0\n[matrix]\nbatch_size = [1]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("impossible_protocol", msg);
}

#[test]
fn set_override_without_equals_sign() {
    let msg = fails(
        &valid_with("[matrix]\nbatch_size = [1]\n"),
        &["--set", "protocol.repeats"],
        &[],
    );
    insta::assert_snapshot!("set_without_equals", msg);
}

#[test]
fn set_override_of_the_wrong_type_names_the_override() {
    let msg = fails(
        &valid_with("[matrix]\nbatch_size = [1]\n"),
        &["--set", "protocol.repeats=many"],
        &[],
    );
    insta::assert_snapshot!("set_wrong_type", msg);
}

#[test]
fn environment_override_of_the_wrong_type_names_the_variable() {
    let msg = fails(
        &valid_with("[matrix]\nbatch_size = [1]\n"),
        &[],
        &[("RUNNER_PROTOCOL__MIN_LOOPS", "lots")],
    );
    insta::assert_snapshot!("env_wrong_type", msg);
}

#[test]
fn exclude_on_a_key_that_is_not_an_axis() {
    let msg = fails(
        &valid_with("[matrix]\nprecision = [\"fp32\"]\nexclude = [{ seq_len = 64 }]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("exclude_non_axis", msg);
}

#[test]
fn everything_excluded_leaves_no_cells() {
    let msg = fails(
        &valid_with("[matrix]\nprecision = [\"fp32\"]\nexclude = [{ precision = \"fp32\" }]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("zero_cells", msg);
}

#[test]
fn cuda_backend_on_a_cpu_only_build_says_how_to_fix_it() {
    if cfg!(feature = "cuda") {
        return; // the CUDA build accepts the key; its GPU path is proven on the GPU
    }
    let msg = fails(
        &valid_with("[device]\nbackend = \"cuda\"\n[matrix]\nbatch_size = [1]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("cuda_on_cpu_build", msg);
}

#[test]
fn experiment_name_that_would_escape_the_results_folder() {
    let toml = format!(
        "[experiment]\nname = \"../evil\"\n{}[matrix]\nbatch_size = [1]\n",
        common_tables()
    );
    let msg = fails(&toml, &[], &[]);
    insta::assert_snapshot!("bad_experiment_name", msg);
}

#[test]
fn unrelated_runner_variables_from_ci_systems_are_ignored() {
    // GitHub Actions sets RUNNER_OS, RUNNER_TEMP ...: single-level names are not config.
    let f = Fixture::new(&valid_with("[matrix]\nbatch_size = [1]\n"));
    let out = f
        .runner()
        .args(["plan", "exp.toml"])
        .env("RUNNER_TEMP", "/tmp")
        .env("RUNNER_OS", "Linux")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn run_without_a_file_is_a_usage_error() {
    let f = Fixture::new("");
    let out = f.runner().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("no experiment file given"));
}

#[test]
fn nvml_sensor_without_nvml_is_a_config_error_and_writes_nothing() {
    // CI machines have no NVIDIA driver, so NVML cannot load; with a driver but no GPU in use the
    // message says the cells run on the CPU. Either way: exit 2, no run directory.
    let f = Fixture::new(&valid_with(
        "[sensor]\nkind = \"nvml\"\n[device]\nbackend = \"cpu\"\n[matrix]\nbatch_size = [1]\n",
    ));
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let msg = stderr_of(&out);
    assert!(
        msg.contains("sensor.kind = \"nvml\" but NVML could not be loaded (")
            && msg.contains("install NVIDIA's driver (libnvidia-ml.so), or set sensor.kind = \"auto\", \"rapl\" or \"none\"")
            || msg.contains("sensor.kind = \"nvml\" meters an NVIDIA GPU, but the cells run on the cpu"),
        "{msg}"
    );
    assert!(
        !run.exists(),
        "nothing is written before the configuration is accepted"
    );
}

// Hostile and malformed files: each still gets one exact message and exit 2, never a panic.

#[test]
fn a_file_that_is_not_utf8_text() {
    let f = Fixture::new("");
    std::fs::write(&f.file, b"[experiment]\nname = \"\xff\xfe\"\n").unwrap();
    let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("not_utf8", f.normalize(&stderr_of(&out)));
}

#[test]
fn an_empty_file() {
    insta::assert_snapshot!("empty_file", fails("", &[], &[]));
}

#[test]
fn a_duplicated_key() {
    let msg = fails(&format!("{BAD_HEADER}name = \"again\"\n"), &[], &[]);
    insta::assert_snapshot!("duplicate_key", msg);
}

#[test]
fn an_integer_too_large_for_toml() {
    let msg = fails(
        &valid_with("[matrix]\nbatch_size = [99999999999999999999]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("integer_overflow", msg);
}

#[test]
fn a_string_where_a_number_belongs_gets_line_and_column() {
    let msg = fails(&valid_with("[matrix]\nbatch_size = [\"16\"]\n"), &[], &[]);
    insta::assert_snapshot!("string_for_number", msg);
}

#[test]
fn nested_arrays_where_numbers_belong() {
    let msg = fails(
        &valid_with("[matrix]\nbatch_size = [[[[[[1]]]]]]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("nested_arrays", msg);
}

#[test]
fn nan_and_infinite_seconds() {
    let msg = fails(
        &valid_with("[protocol]\nwarmup_s = nan\ncooldown_s = inf\n[matrix]\nbatch_size = [1]\n"),
        &[],
        &[],
    );
    insta::assert_snapshot!("nan_and_inf", msg);
}

#[test]
fn a_matrix_too_large_to_plan() {
    let batches: Vec<String> = (1..=400).map(|b| b.to_string()).collect();
    let seqs: Vec<String> = (2..=301).map(|s| s.to_string()).collect();
    let msg = fails(
        &valid_with(&format!(
            "[matrix]\nbatch_size = [{}]\nseq_len = [{}]\n",
            batches.join(", "),
            seqs.join(", ")
        )),
        &[],
        &[],
    );
    insta::assert_snapshot!("matrix_too_large", msg);
}

#[test]
fn an_impossible_value_from_set_names_the_override_not_the_file() {
    let msg = fails(
        &valid_with("[protocol]\nrepeats = 3\n[matrix]\nbatch_size = [1]\n"),
        &["--set", "protocol.repeats=0"],
        &[],
    );
    insta::assert_snapshot!("set_impossible_value", msg);
}

#[test]
fn an_impossible_value_from_the_environment_names_the_variable() {
    let msg = fails(
        &valid_with("[matrix]\nbatch_size = [1]\n"),
        &[],
        &[("RUNNER_PROTOCOL__MIN_WINDOW_S", "-2")],
    );
    insta::assert_snapshot!("env_impossible_value", msg);
}

#[test]
fn a_dataset_path_that_is_a_folder_or_device() {
    let toml = format!(
        "{BAD_HEADER}[dataset]\npath = \"/dev/zero\"\ntokenizer = \".\"\n\
         [models.tiny]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n[matrix]\nbatch_size = [1]\n"
    );
    insta::assert_snapshot!("dataset_is_a_device", fails(&toml, &[], &[]));
}

#[test]
fn markup_and_control_characters_in_names() {
    let toml = valid_with("[matrix]\nbatch_size = [1]\n")
        .replace("name = \"bad\"", "name = \"<script>\\u0000\"")
        .replace("[models.tiny]", "[models.\"<img src=x>\"]");
    insta::assert_snapshot!("markup_in_names", fails(&toml, &[], &[]));
}

#[test]
fn several_worker_settings_that_cannot_work_are_named() {
    let matrix = "[matrix]\nbatch_size = [1]\n";
    // GPUs on the CPU backend, a name that is not "all", an empty list, a GPU twice.
    for (name, device) in [
        (
            "gpus_on_cpu",
            "[device]\nbackend = \"cpu\"\ngpus = [0, 1]\n",
        ),
        ("gpus_unknown_name", "[device]\ngpus = \"some\"\n"),
        ("gpus_empty", "[device]\ngpus = []\n"),
        ("gpus_twice", "[device]\ngpus = [0, 1, 0]\n"),
        (
            "cpu_workers_zero",
            "[device]\nbackend = \"cpu\"\ncpu_workers = 0\n",
        ),
        ("cpu_workers_on_auto", "[device]\ncpu_workers = 2\n"),
    ] {
        let msg = fails(&valid_with(&format!("{device}{matrix}")), &[], &[]);
        insta::assert_snapshot!(name, msg);
    }
    // A wrong type names the key too.
    let msg = fails(
        &valid_with(&format!("[device]\ngpus = [\"a\"]\n{matrix}")),
        &[],
        &[],
    );
    insta::assert_snapshot!("gpus_wrong_type", msg);
    // The CUDA-graph switch is a boolean, named when it is not one.
    let msg = fails(
        &valid_with(&format!("[device]\ncuda_graphs = \"yes\"\n{matrix}")),
        &[],
        &[],
    );
    assert!(msg.contains("cuda_graphs"), "{msg}");
    assert!(msg.contains("exp.toml"), "{msg}");
}

/// A model's name with dots is quoted in every message, as TOML writes it
/// (`models."qwen2.5-tiny".colour`), so it does not read as a path of three names: figment's
/// unknown key and unknown value, and the model's own checks (an unknown preset).
#[test]
fn dotted_model_names_are_quoted_in_messages() {
    let models = |body: &str| {
        valid_with(&format!(
            "[models.\"qwen2.5-tiny\"]\narchitecture = \"qwen2\"\n{body}\n[matrix]\nmodel = [\"qwen2.5-tiny\"]\nprompt_len = [8]\nnew_tokens = [2]\n"
        ))
        .replace("[models.tiny]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n", "")
    };
    for (body, expected) in [
        (
            "preset = \"qwen2-tiny\"\ncolour = 1",
            "unknown key `models.\"qwen2.5-tiny\".colour`",
        ),
        (
            "preset = \"qwen2-tiny\"\nprefill_attention = \"fast\"",
            "`models.\"qwen2.5-tiny\".prefill_attention`: unknown value \"fast\"",
        ),
        ("preset = \"no-such-preset\"", "models.\"qwen2.5-tiny\""),
    ] {
        let msg = fails(&models(body), &[], &[]);
        assert!(msg.contains(expected), "{expected} in: {msg}");
        assert!(!msg.contains("models.qwen2.5-tiny"), "unquoted: {msg}");
    }
}
