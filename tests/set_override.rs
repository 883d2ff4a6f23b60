//! `--set` on a model whose name holds dots (`qwen2.5-0.5b`, `llama-3.2-1b`, as the shipped LLM
//! experiments name them), through the real binary: the name quoted as TOML quotes it reaches
//! that model, and a message about its value names the override; the name left unquoted, or a
//! malformed key path, is refused (exit 2) with the flag named and the quoted form to write.
//! The report shows each override as the shell words that set it.

mod common;
use common::*;

/// A decoder named with dots, on the CPU, whose `preset` the file leaves out (so the file alone
/// does not plan).
fn dotted_model(extra: &str) -> String {
    format!(
        "[experiment]\nname = \"dots\"\n[device]\nbackend = \"cpu\"\n\
         [dataset]\npath = \"{}\"\ntokenizer = \"{}\"\nlimit = 8\n\
         [models.\"qwen2.5-tiny\"]\narchitecture = \"llama\"\nimplementation = \"own\"\n{extra}\
         [matrix]\nprecision = [\"fp32\"]\nbatch_size = [1]\nprompt_len = [8]\nnew_tokens = [4]\n",
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display(),
    )
}

fn plan(toml: &str, sets: &[&str]) -> std::process::Output {
    let f = Fixture::new(toml);
    let mut cmd = f.runner();
    cmd.args(["plan", "exp.toml"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.output().unwrap()
}

#[test]
fn a_quoted_model_name_with_dots_is_set_as_the_file_names_it() {
    // Without the preset the file does not plan; the quoted override supplies it.
    let without = plan(&dotted_model(""), &[]);
    assert_eq!(without.status.code(), Some(2), "{}", stderr_of(&without));
    for set in [
        r#"models."qwen2.5-tiny".preset="llama-tiny""#,
        "models.'qwen2.5-tiny'.preset=llama-tiny",
    ] {
        let out = plan(&dotted_model(""), &[set]);
        assert_eq!(out.status.code(), Some(0), "{set}: {}", stderr_of(&out));
        assert!(
            stdout_of(&out).contains("qwen2.5-tiny"),
            "{}",
            stdout_of(&out)
        );
    }
}

#[test]
fn a_refused_value_set_on_a_dotted_model_names_the_override_not_the_file() {
    let set = r#"models."qwen2.5-tiny".decode_kernels="fused""#;
    let msg = fails(
        &dotted_model("preset = \"llama-tiny\"\n"),
        &["--set", set],
        &[],
    );
    assert!(msg.contains(&format!("--set {set}")), "{msg}");
    assert!(msg.contains("CUDA kernels"), "{msg}");
    assert!(!msg.contains("exp.toml:"), "the file did not set it: {msg}");
}

#[test]
fn an_unquoted_dotted_model_name_gets_the_quoted_form_to_write() {
    let msg = fails(
        &dotted_model("preset = \"llama-tiny\"\n"),
        &["--set", "models.qwen2.5-tiny.decode_kernels=fused"],
        &[],
    );
    assert!(
        msg.contains("--set models.qwen2.5-tiny.decode_kernels=fused:"),
        "{msg}"
    );
    assert!(msg.contains("no model `qwen2`"), "{msg}");
    assert!(
        msg.contains(r#"--set 'models."qwen2.5-tiny".decode_kernels=fused'"#),
        "{msg}"
    );
}

#[test]
fn a_malformed_key_path_names_the_flag_and_what_to_write() {
    for set in [
        r#"models."qwen2.5-tiny.preset=llama-tiny"#,
        "models.qwen 2.preset=llama-tiny",
        "models..preset=llama-tiny",
    ] {
        let msg = fails(&dotted_model(""), &["--set", set], &[]);
        assert!(msg.contains(&format!("--set {set}:")), "{msg}");
        assert!(msg.contains("not a key path"), "{msg}");
        assert!(
            msg.contains(r#"--set 'models."qwen2.5-0.5b".decode_kernels=fused'"#),
            "{msg}"
        );
    }
}

#[test]
fn the_help_says_how_to_set_a_name_with_dots() {
    let f = Fixture::new("");
    for sub in [&["run", "--help"][..], &["plan", "--help"]] {
        let out = f.runner().args(sub).output().unwrap();
        let help = stdout_of(&out);
        assert!(
            help.contains(r#"models."qwen2.5-0.5b".decode_kernels=fused"#),
            "{sub:?}: {help}"
        );
    }
}

#[test]
fn the_reports_overrides_paste_back_into_a_shell_as_they_were_given() {
    let f = Fixture::new(&tiny_experiment(
        "[matrix]\nbatch_size = [2]\nseq_len = [16]\n",
    ));
    let value = r#"experiment.description="a'b $(touch X)""#;
    f.runner()
        .args(["exp.toml", "--out", "run", "--set", value])
        .assert()
        .success();
    let md = std::fs::read_to_string(f.dir.path().join("run/report.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| Overrides | "))
        .unwrap_or_else(|| panic!("no overrides row: {md}"));
    let words = row
        .trim_start_matches("| Overrides | `")
        .split_once("` ")
        .unwrap_or_else(|| panic!("one code span: {row}"))
        .0;
    // The shell reads the override back as the one word given, and runs nothing.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {words}"))
        .current_dir(f.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("--set\n{value}\n"),
        "{row}"
    );
    assert!(!f.dir.path().join("X").exists(), "{row} ran a command");
}
