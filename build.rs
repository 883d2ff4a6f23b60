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
