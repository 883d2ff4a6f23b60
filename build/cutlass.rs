//! The CUTLASS GEMMs (src/ops/kernels/cutlass/*.cu, one instantiation a file) compiled by nvcc
//! for sm_90a into a static library with extern "C" entry points, as candle-flash-attn builds its
//! kernels. Only with the headers of a pinned CUTLASS (`CUTLASS_INCLUDE`, which
//! scripts/cuda-toolchain.sh sets from NVIDIA's `nvidia-cutlass` 4.2.0.0 wheel) and Hopper as the
//! target (`CUDA_COMPUTE_CAP=90`): then `cfg(has_cutlass_sm90)`. Otherwise the build still links,
//! the GEMMs are cuBLASLt's, and `RUNNER_CUTLASS` says why, for the record. Nothing is fetched.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: &str = "src/ops/kernels/cutlass";

pub fn build() {
    println!("cargo:rerun-if-env-changed=CUTLASS_INCLUDE");
    println!("cargo:rerun-if-changed={SOURCES}");
    match compile() {
        Ok(what) => {
            println!("cargo:rustc-cfg=has_cutlass_sm90");
            println!("cargo:rustc-env=RUNNER_CUTLASS={what}");
        }
        Err(why) => {
            println!("cargo:warning=no CUTLASS GEMMs in this build ({why}); the W8A8 and float GEMMs are cuBLASLt's");
            println!("cargo:rustc-env=RUNNER_CUTLASS=none ({why})");
        }
    }
}

/// Compiles the library and returns what it holds (the CUTLASS version), or why there is none.
fn compile() -> Result<String, String> {
    let Some(include) = std::env::var_os("CUTLASS_INCLUDE").map(PathBuf::from) else {
        return Err("CUTLASS_INCLUDE is not set: scripts/build-cuda.sh sets it".into());
    };
    let util = include.join("../tools/util/include");
    for needed in [
        include.join("cutlass/cutlass.h"),
        util.join("cutlass/util/packed_stride.hpp"),
    ] {
        if !needed.is_file() {
            return Err(format!("CUTLASS_INCLUDE: no {}", needed.display()));
        }
    }
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".to_string());
    if cap != "90" {
        return Err(format!(
            "CUDA_COMPUTE_CAP={cap}: the CUTLASS GEMMs are Hopper (sm_90a) kernels"
        ));
    }
    let version = version(&include)?;
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The objects outlive OUT_DIR where RUNNER_CUTLASS_BUILD_DIR says (scripts/build-cuda.sh puts
    // them under target/cuda/), as candle-flash-attn's CANDLE_FLASH_ATTN_BUILD_DIR: a clean build
    // or a new OUT_DIR does not pay the CUTLASS compile again.
    println!("cargo:rerun-if-env-changed=RUNNER_CUTLASS_BUILD_DIR");
    let objects_dir = std::env::var_os("RUNNER_CUTLASS_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| out.clone());
    std::fs::create_dir_all(&objects_dir).map_err(|e| format!("{}: {e}", objects_dir.display()))?;
    let mut units: Vec<PathBuf> = std::fs::read_dir(SOURCES)
        .map_err(|e| format!("{SOURCES}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    units.sort();
    // Each instantiation takes about a CPU-minute of nvcc: compile only what changed, two at once
    // (RUNNER_CUTLASS_JOBS overrides), since a CUTLASS unit also takes ~2 GB of memory.
    let jobs: usize = std::env::var("RUNNER_CUTLASS_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2)
        .max(1);
    println!("cargo:rerun-if-env-changed=RUNNER_CUTLASS_JOBS");
    let objects: Vec<PathBuf> = units
        .iter()
        .map(|u| objects_dir.join(u.with_extension("o").file_name().expect("a file")))
        .collect();
    let stale: Vec<(&PathBuf, &PathBuf)> = units
        .iter()
        .zip(&objects)
        .filter(|(u, o)| local_includes(u).iter().any(|source| newer(source, o)))
        .collect();
    for chunk in stale.chunks(jobs) {
        let running: Vec<_> = chunk
            .iter()
            .map(|(unit, object)| {
                // nvcc's messages and ptxas's resource usage (registers, and the stack a spill
                // needs: none is wanted) go beside the object, where a failure points to.
                let log = object.with_extension("log");
                let log_file =
                    std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
                let child = Command::new("nvcc")
                    .args([
                        "-std=c++17",
                        "-O3",
                        "-DNDEBUG",
                        "--expt-relaxed-constexpr",
                        "-gencode=arch=compute_90a,code=sm_90a",
                        "-Xcompiler=-fPIC",
                        "--resource-usage",
                    ])
                    .arg("-I")
                    .arg(&include)
                    .arg("-I")
                    .arg(&util)
                    .arg("-c")
                    .arg(unit)
                    .arg("-o")
                    .arg(object)
                    .stdout(log_file.try_clone().map_err(|e| format!("{e}"))?)
                    .stderr(log_file)
                    .spawn()
                    .map_err(|e| format!("running nvcc: {e}"))?;
                Ok::<_, String>((unit, log, child))
            })
            .collect::<Result<_, _>>()?;
        for (unit, log, mut child) in running {
            let status = child.wait().map_err(|e| format!("nvcc: {e}"))?;
            // A unit that fails to compile is a bug in this repository, not a missing toolkit.
            assert!(
                status.success(),
                "nvcc failed on {} ({}):\n{}",
                unit.display(),
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
    let lib = out.join("librunner_cutlass.a");
    let _ = std::fs::remove_file(&lib);
    let status = Command::new("ar")
        .arg("crs")
        .arg(&lib)
        .args(&objects)
        .status()
        .map_err(|e| format!("running ar: {e}"))?;
    assert!(status.success(), "ar failed on {}", lib.display());
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=runner_cutlass");
    // The CUTLASS host code calls the CUDA runtime (kernel attributes, cluster launches).
    if let Some(root) = std::env::var_os("CUDA_ROOT") {
        for lib_dir in ["lib", "lib64"] {
            let dir = Path::new(&root).join(lib_dir);
            if dir.is_dir() {
                println!("cargo:rustc-link-search=native={}", dir.display());
            }
        }
    }
    println!("cargo:rustc-link-lib=dylib=cudart");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    Ok(format!(
        "CUTLASS {version} sm_90a ({} instantiations)",
        units.len()
    ))
}

/// The unit and every header of this folder it includes, transitively (`#include "x.cuh"`): a
/// unit is recompiled when any of them changed, not only when gemm.cuh did (an edit of
/// gemm_rows.cuh used to leave its four units' objects stale and linked).
fn local_includes(unit: &Path) -> Vec<PathBuf> {
    let mut seen = vec![unit.to_path_buf()];
    let mut next = 0;
    while next < seen.len() {
        let text = std::fs::read_to_string(&seen[next]).unwrap_or_default();
        next += 1;
        for line in text.lines() {
            let Some(name) = line
                .trim()
                .strip_prefix("#include \"")
                .and_then(|rest| rest.split('"').next())
            else {
                continue;
            };
            let header = Path::new(SOURCES).join(name);
            if header.is_file() && !seen.contains(&header) {
                seen.push(header);
            }
        }
    }
    seen
}

/// Whether `source` changed after `object` was written (or there is no object yet).
fn newer(source: &Path, object: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(source), modified(object)) {
        (Some(s), Some(o)) => s > o,
        _ => true,
    }
}

/// "4.2.0" from cutlass/version.h.
fn version(include: &Path) -> Result<String, String> {
    let path = include.join("cutlass/version.h");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let number = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("#define {key} ")))
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    match (
        number("CUTLASS_MAJOR"),
        number("CUTLASS_MINOR"),
        number("CUTLASS_PATCH"),
    ) {
        (Some(a), Some(b), Some(c)) => Ok(format!("{a}.{b}.{c}")),
        _ => Err(format!("{}: no CUTLASS version", path.display())),
    }
}
