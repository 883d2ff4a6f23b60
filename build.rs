//! Records the versions of the crates that shape the measurements (from Cargo.lock), so every
//! run's manifest says exactly which candle, tokenizers ... produced its numbers.

const RECORDED: [&str; 9] = [
    "candle-core",
    "candle-nn",
    "cudarc",
    "tokenizers",
    "nvml-wrapper",
    "gemm",
    "half",
    "minijinja",
    "plotters",
];

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    record_git_commit();
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut pairs = Vec::new();
    let mut name: Option<String> = None;
    for line in lock.lines() {
        if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("version = ") {
            if let Some(n) = name.take() {
                if RECORDED.contains(&n.as_str()) {
                    pairs.push(format!("{n} {}", v.trim_matches('"')));
                }
            }
        }
    }
    pairs.sort();
    pairs.dedup();
    println!("cargo:rustc-env=RUNNER_CRATE_VERSIONS={}", pairs.join(";"));
}

/// The commit the binary was built from (with "-dirty" for uncommitted changes to tracked files),
/// because the binary often runs where there is no repository (a GPU machine gets a copy).
fn record_git_commit() {
    for path in [".git/HEAD", ".git/index"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=RUNNER_BUILD_COMMIT={commit}");
}
