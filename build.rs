//! Records the versions of the crates that shape the measurements (from Cargo.lock), so every
//! run's manifest says exactly which candle, tokenizers ... produced its numbers. With the cuda
//! feature it also compiles the runner's kernels: PTX, and the CUTLASS GEMMs (build/cutlass.rs).

#[path = "build/cutlass.rs"]
mod cutlass;

const RECORDED: [&str; 10] = [
    "candle-core",
    "candle-nn",
    "candle-transformers",
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
    println!("cargo::rustc-check-cfg=cfg(has_cutlass_sm90)");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_kernels();
        cutlass::build();
    } else {
        println!("cargo:rustc-env=RUNNER_CUTLASS=none (a build without the cuda feature)");
    }
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
            // --no-optional-locks: a plain `git status` refreshes and rewrites .git/index,
            // which this script watches, so the next cargo command would rebuild the crate.
            let dirty = git(&[
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=no",
            ])
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

/// The runner's CUDA kernels (src/ops/kernels/*.cu) to PTX with nvcc, for the GPU generation in
/// CUDA_COMPUTE_CAP (default 90, as candle's kernels); embedded in the binary, JIT-compiled by the
/// driver on first use. Only for the "cuda" feature, whose build needs nvcc anyway.
fn compile_kernels() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".to_string());
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    // (PTX name, source, extra nvcc flags): the decode GEMV once a dtype (one module each, so
    // the driver JIT-compiles only the dtype a run uses).
    const KERNELS: &[(&str, &str, &str)] = &[
        ("fused", "fused", ""),
        ("eight_bit", "eight_bit", ""),
        ("decode", "decode", ""),
        ("prefill", "prefill", ""),
        ("gemv_f32", "gemv", "-DGEMV_DTYPE=0"),
        ("gemv_f16", "gemv", "-DGEMV_DTYPE=1"),
        ("gemv_bf16", "gemv", "-DGEMV_DTYPE=2"),
    ];
    println!("cargo:rerun-if-changed=src/ops/kernels/common.cuh");
    println!("cargo:rerun-if-changed=src/ops/kernels/attention.cuh");
    println!("cargo:rerun-if-changed=src/ops/kernels/decode_attention.cuh");
    println!("cargo:rerun-if-changed=src/ops/kernels/decode_cluster.cuh");
    println!("cargo:rerun-if-changed=src/ops/kernels/gemv_fold.cuh");
    println!("cargo:rerun-if-changed=src/ops/kernels/gemv_long.cuh");
    println!("cargo:rerun-if-changed=src/ops/kernels/norm_row.cuh");
    for (name, source, flags) in KERNELS {
        let src = format!("src/ops/kernels/{source}.cu");
        println!("cargo:rerun-if-changed={src}");
        let mut nvcc = std::process::Command::new("nvcc");
        nvcc.args(["--ptx", "-O3", &format!("-arch=compute_{cap}")]);
        if !flags.is_empty() {
            nvcc.arg(flags);
        }
        let status = nvcc
            .arg(&src)
            .arg("-o")
            .arg(out.join(format!("{name}.ptx")))
            .status()
            .expect(
                "running nvcc (the cuda feature needs the CUDA toolkit: scripts/build-cuda.sh)",
            );
        assert!(status.success(), "nvcc failed on {src}");
    }
}
