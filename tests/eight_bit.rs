//! The W8A8 precisions (`int8-<float>`, `fp8-<float>`) end to end on the CPU, where they run the
//! numerics reference: the records say so and carry fidelity against fp32.

mod common;
use common::*;

#[test]
fn int8_and_fp8_cells_run_the_numerics_reference_and_say_so() {
    let toml = format!(
        "[experiment]\nname = \"w8a8\"\ndescription = \"W8A8 numerics on the CPU\"\n{}{FAST_PROTOCOL}[matrix]\nprecision = [\"fp32\", \"int8-fp32\", \"fp8-fp16\"]\nbatch_size = [2]\nseq_len = [16]\n",
        common_tables()
    );
    let f = Fixture::new(&toml);
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    let mut seen = Vec::new();
    for cell in manifest["plan"].as_array().unwrap() {
        let id = cell["id"].as_str().unwrap();
        let path = run.join("cells").join(format!("{id}.json"));
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(record["status"], "ok", "{record}");
        let precision = cell["precision"].as_str().unwrap();
        let executed = record["precision_executed"].as_str().unwrap();
        if precision == "fp32" {
            assert_eq!(executed, "fp32");
            continue;
        }
        let (format, float) = precision.split_once('-').unwrap();
        assert_eq!(
            executed,
            format!("{format} W8A8 linears (numerics reference: f32 arithmetic on {format} values, per-channel weights, per-token dynamic inputs) + {float}")
        );
        assert!(record["implementation"]["linear"]
            .as_str()
            .unwrap()
            .contains("not a speed figure"));
        let cosine = record["fidelity"]["cosine"]
            .as_f64()
            .unwrap_or_else(|| panic!("fidelity in {record}"));
        assert!(
            cosine > 0.99 && cosine < 1.0,
            "{precision}: cosine {cosine}"
        );
        seen.push(precision.to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("numerics reference"), "{md}");
}

#[test]
fn the_plan_lists_the_eight_bit_precisions_by_name() {
    let toml = format!(
        "[experiment]\nname = \"w8a8\"\n{}{FAST_PROTOCOL}[matrix]\nprecision = [\"int8-fp16\", \"int8-bf16\", \"fp8-fp16\", \"fp8-bf16\"]\nbatch_size = [1]\nseq_len = [16]\n",
        common_tables()
    );
    let f = Fixture::new(&toml);
    let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    for name in ["int8-fp16", "int8-bf16", "fp8-fp16", "fp8-bf16"] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
}

/// `device.ffn_activation_scales = "static"` on the CPU: the FFNs' steps are calibrated through
/// the fp32 model at load and the f32 reference runs them; the record says how (sentences,
/// margin, saturation on held-out sentences), the fidelity stays that of the dynamic cells, and
/// the cell ids differ from the dynamic ones (only the 8-bit cells').
#[test]
fn static_ffn_scales_are_calibrated_recorded_and_in_the_id() {
    let toml = format!(
        "[experiment]\nname = \"w8a8\"\ndescription = \"static steps\"\n{}{FAST_PROTOCOL}[matrix]\nprecision = [\"fp32\", \"int8-fp32\", \"fp8-fp16\"]\nbatch_size = [2]\nseq_len = [16]\n",
        common_tables()
    );
    let f = Fixture::new(&toml);
    let plan = |sets: &[&str]| -> Vec<String> {
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
            .map(|l| l[..12].to_string())
            .collect()
    };
    let dynamic = plan(&[]);
    let with_static = plan(&["device.ffn_activation_scales=static"]);
    assert_eq!(dynamic.len(), 3);
    let changed = dynamic
        .iter()
        .zip(&with_static)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        changed, 2,
        "the two 8-bit cells, not fp32: {dynamic:?} {with_static:?}"
    );
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args([
            "exp.toml",
            "--set",
            "device.ffn_activation_scales=static",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    let mut seen = 0;
    for cell in manifest["plan"].as_array().unwrap() {
        let id = cell["id"].as_str().unwrap();
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(run.join("cells").join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["status"], "ok", "{record}");
        let steps = record["implementation"]["ffn_activation_scales"].as_str();
        if cell["precision"] == "fp32" {
            assert!(steps.is_none(), "{record}");
            continue;
        }
        let steps = steps.unwrap_or_else(|| panic!("no ffn_activation_scales in {record}"));
        // int8 a step per column; E4M3 one step for the whole tensor (static_codes.rs's ffn_steps).
        let sharing = if cell["precision"].as_str().unwrap().starts_with("fp8") {
            "one static step for the whole tensor (E4M3: the largest column's, in every column)"
        } else {
            "static per-column steps"
        };
        for part in [sharing, "through the fp32 model", "held", "saturate"] {
            assert!(steps.contains(part), "{part}: {steps}");
        }
        let q = record["implementation"]["activation_quantization"]
            .as_str()
            .unwrap();
        assert!(
            q.contains(sharing) && q.contains("f32 numerics reference"),
            "{q}"
        );
        let cosine = record["fidelity"]["cosine"].as_f64().unwrap();
        assert!(cosine > 0.99 && cosine < 1.0, "{cosine}");
        seen += 1;
    }
    assert_eq!(seen, 2);
}
