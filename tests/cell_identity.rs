//! A cell's id names everything that changes what it measures: each execution setting
//! (device.cuda_graphs, device.fuse_quantization, device.fp8_fast_accumulation,
//! device.gemm_library, device.ffn_activation_scales, device.gelu_epilogue) changes the ids
//! of the cells it affects and no others; a `--resume` with one flipped is refused naming the
//! setting, and so is one with another sensor setting (one run, one manifest, one setting).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;

fn experiment() -> String {
    format!(
        "[experiment]\nname = \"ids\"\n{}{FAST_PROTOCOL}[matrix]\nprecision = [\"fp32\", \"int8-fp32\", \"fp8-fp32\"]\nbatch_size = [2]\nseq_len = [8]\n",
        common_tables()
    )
}

/// precision -> id, from `runner plan` with `sets` overrides.
fn ids(f: &Fixture, sets: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = f.runner();
    cmd.args(["plan", "exp.toml"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    stdout_of(&out)
        .lines()
        .filter(|l| l.len() > 12 && runner::matrix::is_cell_id(&l[..12]))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_string(), f[0].to_string())
        })
        .collect()
}

#[test]
fn each_execution_setting_changes_the_ids_of_the_cells_it_affects_and_no_others() {
    let f = Fixture::new(&experiment());
    let base = ids(&f, &[]);
    // The defaults written out change nothing: ids of runs made before the settings existed hold.
    // (device.fused_embeddings is off by default only where its kernel cannot run: this CPU build.)
    let mut defaults = vec![
        "device.cuda_graphs=true",
        "device.fuse_quantization=true",
        "device.fp8_fast_accumulation=false",
        "device.gemm_library=cublaslt",
        "device.ffn_activation_scales=dynamic",
        "device.gelu_epilogue=standard",
        "device.attention_padding=compute",
        "device.attention_activation_scales=dynamic",
    ];
    if !cfg!(feature = "cuda") {
        defaults.push("device.fused_embeddings=false");
    }
    assert_eq!(ids(&f, &defaults), base);
    let changed = |set: &str| -> Vec<String> {
        let other = ids(&f, &[set]);
        base.iter()
            .filter(|(p, id)| other[*p] != **id)
            .map(|(p, _)| p.clone())
            .collect()
    };
    assert_eq!(
        changed("device.cuda_graphs=false"),
        ["fp32", "fp8-fp32", "int8-fp32"]
    );
    assert_eq!(
        changed("device.fuse_quantization=false"),
        ["fp8-fp32", "int8-fp32"]
    );
    assert_eq!(changed("device.fp8_fast_accumulation=true"), ["fp8-fp32"]);
    // CUTLASS's fused epilogues: the 8-bit (and fp16/bf16) cells, not fp32's cuBLAS GEMMs.
    assert_eq!(
        changed("device.gemm_library=cutlass"),
        ["fp8-fp32", "int8-fp32"]
    );
    // Static FFN activation steps: the 8-bit cells only.
    assert_eq!(
        changed("device.ffn_activation_scales=static"),
        ["fp8-fp32", "int8-fp32"]
    );
    // The lean GELU epilogue (CUTLASS only): the cells with CUTLASS GEMMs, against CUTLASS's ids.
    let cutlass = ids(&f, &["device.gemm_library=cutlass"]);
    let lean = ids(
        &f,
        &["device.gemm_library=cutlass", "device.gelu_epilogue=lean"],
    );
    let moved: Vec<&String> = cutlass
        .iter()
        .filter(|(p, id)| lean[*p] != **id)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(moved, ["fp8-fp32", "int8-fp32"]);
}

fn snapshot(run: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn a_resume_with_another_execution_or_sensor_setting_is_refused_naming_it() {
    let f = Fixture::new(&experiment());
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let run = f.dir.path().join("run");
    let records = snapshot(&run);
    let manifest = std::fs::read(run.join("manifest.json")).unwrap();
    for (set, expected) in [
        (
            "device.cuda_graphs=false",
            "device.cuda_graphs: (default), now false",
        ),
        (
            "device.fuse_quantization=false",
            "device.fuse_quantization: (default), now false",
        ),
        (
            "device.fp8_fast_accumulation=true",
            "device.fp8_fast_accumulation: (default), now true",
        ),
        (
            "device.gemm_library=cutlass",
            "device.gemm_library: (default), now \"cutlass\"",
        ),
        (
            "sensor.sample_interval_ms=50",
            "would measure the rest with sensor.kind = \"auto\", sensor.sample_interval_ms = 50",
        ),
    ] {
        let out = f
            .runner()
            .args(["exp.toml", "--out", "run", "--resume", "--set", set])
            .output()
            .unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{set}: {stderr}");
        assert!(stderr.contains(expected), "{set}: {stderr}");
        assert!(
            stderr.contains("start a new run without --resume"),
            "{stderr}"
        );
        // Nothing of the run changed: the manifest still says how its cells were measured.
        assert_eq!(snapshot(&run), records, "{set}");
        assert_eq!(std::fs::read(run.join("manifest.json")).unwrap(), manifest);
    }
}
