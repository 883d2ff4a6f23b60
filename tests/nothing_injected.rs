//! Nothing injected: what a user types never becomes a command in a job script, markup in
//! report.md, or a formula in summary.csv.

mod common;
use common::*;

fn experiment(description: &str) -> String {
    format!(
        "[experiment]\nname = \"inject\"\ndescription = {description:?}\n{}{FAST_PROTOCOL}\
         [matrix]\nbatch_size = [1]\nseq_len = [8]\n",
        common_tables()
    )
}

#[test]
fn control_characters_never_reach_a_job_script() {
    let f = Fixture::new(&experiment("x"));
    std::fs::write(f.dir.path().join("bad\nname.toml"), experiment("x")).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--partition", "gpu\ntouch /tmp/pwned"], "--partition"),
        (vec!["--time", "30:00\rtouch x"], "--time"),
        (vec!["--sbatch-arg=--account=a\ntouch x"], "--sbatch-arg"),
        (vec!["--out", "run\ntouch x"], "--out"),
        (vec!["--set", "experiment.description=a\u{1b}[2J"], "--set"),
    ];
    for (extra, option) in cases {
        let mut args = vec!["slurm", "exp.toml"];
        if !extra.contains(&"--out") {
            args.extend(["--out", "run"]);
        }
        args.extend(&extra);
        let out = f.runner().args(&args).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(option), "{args:?}: {stderr}");
        assert!(stderr.contains("control character"), "{stderr}");
        assert!(!f.dir.path().join("run").exists(), "{args:?} wrote a run");
    }
    let out = f
        .runner()
        .args(["slurm", "bad\nname.toml", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("the experiment file"));
}

#[test]
fn a_run_directory_keeps_its_percent_signs_in_the_log_names_and_refuses_a_backslash() {
    let f = Fixture::new(&experiment("x"));
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run 100%x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let script =
        std::fs::read_to_string(f.dir.path().join("run 100%x/slurm/array-0.sbatch")).unwrap();
    assert!(
        script.contains("/run 100%%x/slurm/logs/%A_%a.log\""),
        "sbatch must not read the directory's %x as the job name:\n{script}"
    );
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run\\b"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backslash"), "{stderr}");
    assert!(
        !f.dir.path().join("run\\b").exists(),
        "a refused run was made"
    );
}

#[test]
fn sbatch_values_are_quoted_for_sbatch_and_the_shell() {
    let f = Fixture::new(&experiment("x"));
    let out = f
        .runner()
        .args([
            "slurm",
            "exp.toml",
            "--out",
            "run dir",
            "--partition",
            "gpu #x \"y\"",
            "--sbatch-arg=--comment=a b",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let script =
        std::fs::read_to_string(f.dir.path().join("run dir/slurm/array-0.sbatch")).unwrap();
    assert!(
        script.contains(r#"#SBATCH "--partition=gpu #x \"y\"""#),
        "{script}"
    );
    assert!(script.contains(r#"#SBATCH "--comment=a b""#), "{script}");
    let exec = script.lines().find(|l| l.starts_with("exec ")).unwrap();
    assert!(exec.contains("/run dir'"), "{exec}");
    // Every line is a comment, a directive, `set` or the one `exec`.
    for line in script.lines() {
        assert!(
            line.starts_with('#') || line.starts_with("set -euo") || line.starts_with("exec "),
            "{line:?} in\n{script}"
        );
    }
}

#[test]
fn user_text_renders_as_text_in_report_md_and_never_as_a_formula_in_csv() {
    let description = "```\n<script>alert(1)</script>\n# Heading\n[x](javascript:alert(1))";
    let f = Fixture::new(&experiment(description));
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let whole = std::fs::read_to_string(f.dir.path().join("run/report.md")).unwrap();
    // The resolved configuration is a code block (checked below): literal text, whatever it holds.
    let md = whole.split("## Configuration (resolved)").next().unwrap();
    assert!(!md.replace("\\<", "").contains("<script>"), "{md}");
    assert!(!md.contains("[x](javascript:"), "{md}");
    assert!(md.contains("\\[x\\](javascript:"), "{md}");
    assert!(!md.lines().any(|l| l.starts_with("# Heading")), "{md}");
    // Only the configuration's own fence opens a code block; it closes after the TOML.
    // (The description's own ``` line sits inside it, shorter than its fence of four.)
    let fences: Vec<&str> = whole.lines().filter(|l| l.starts_with("````")).collect();
    assert_eq!(fences, ["````toml", "````"], "{whole}");
    assert!(!md.lines().any(|l| l.starts_with("```")), "{md}");
    // An override with a pipe and backticks: the "What was run" row keeps its two columns.
    let out = f
        .runner()
        .args([
            "exp.toml",
            "--out",
            "run2",
            "--set",
            "experiment.description=a | b ` c ```",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let md = std::fs::read_to_string(f.dir.path().join("run2/report.md")).unwrap();
    let row = md.lines().find(|l| l.starts_with("| Overrides |")).unwrap();
    let bare = row.replace("\\|", "");
    assert_eq!(bare.matches('|').count(), 3, "{row}");
    assert!(row.contains("a \\| b"), "{row}");
}

#[test]
fn markdown_filters_escape_for_code_spans_tables_and_fences() {
    use runner::report::markdown::{code_span, escape, fenced};
    assert_eq!(code_span("--set x=`a|b`", true), "`` --set x=`a\\|b` ``");
    assert!(fenced("```\nx\n", "toml").starts_with("````toml\n"));
    assert_eq!(
        escape("=cmd|' /C calc'!A0", false),
        "\\=cmd\\|' /C calc'\\!A0"
    );
}
