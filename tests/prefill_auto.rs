//! `prefill_attention = "auto"`, the default: resolved per cell before anything is measured
//! (flash where the cell runs bf16/f16 on CUDA, plain elsewhere), and the cell id, the cell in the
//! record, the plan and `implementation.prefill_attention` say what it resolved to, never "auto".
//! On the CPU (these tests) it is plain and says so; the CUDA plan is checked through the
//! library, as the binary here has no GPU to plan for.

mod common;

use std::path::Path;

use common::{decoder_experiment, stdout_of};
use runner::matrix::{self, Cell, Target};

const MODELS: &str = "[models.auto]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n\
    [models.plain]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\nprefill_attention = \"plain\"\n\
    [models.crate]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n";
const MATRIX: &str = "model = [\"auto\", \"plain\", \"crate\"]\nprecision = [\"fp32\", \"bf16\"]\nbatch_size = [1]\nprompt_len = [8]\nnew_tokens = [2]";

fn cells(target: Target, models: &str) -> Vec<Cell> {
    let fx = decoder_experiment("auto", models, MATRIX);
    // The backend left to the runner (the CUDA target plans an explicit flash too).
    let text = std::fs::read_to_string(&fx.file)
        .unwrap()
        .replace("backend = \"cpu\"", "backend = \"auto\"");
    let exp = runner::config::load_text(Path::new(&fx.file), &text, &[]).unwrap();
    matrix::expand(&exp, target).unwrap().cells
}

fn id(cells: &[Cell], model: &str, precision: &str) -> String {
    cells
        .iter()
        .find(|c| c.model == model && c.precision.name() == precision)
        .unwrap_or_else(|| panic!("no {model} {precision} cell"))
        .id
        .clone()
}

/// The binary on the CPU: auto runs plain, the records and the plan say so, and an auto cell
/// has the id of the same cell written plain (what it measures is the same).
#[test]
fn auto_runs_plain_on_the_cpu_and_says_so() {
    let fx = decoder_experiment("auto", MODELS, MATRIX);
    let plan = fx.runner().arg("plan").arg(&fx.file).output().unwrap();
    assert!(plan.status.success());
    let listing = stdout_of(&plan);
    assert!(
        listing
            .contains("models.auto.prefill_attention = \"auto\" on the CPU: plain at fp32, bf16"),
        "{listing}"
    );
    // Only the auto model gets the line: plain is written, the crate's model has no key.
    assert!(
        !listing.contains("models.plain.prefill_attention"),
        "{listing}"
    );
    assert!(
        !listing.contains("models.crate.prefill_attention"),
        "{listing}"
    );

    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    let mut ids = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(out.join("cells")).unwrap() {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let (model, precision) = (
            r["cell"]["model"].as_str().unwrap().to_string(),
            r["cell"]["precision"].as_str().unwrap().to_string(),
        );
        assert_eq!(r["status"], "ok", "{model} {precision}: {}", r["reason"]);
        // The cell in the record never says auto: plain is the field left out.
        assert!(
            r["cell"].get("prefill_attention").is_none(),
            "{}",
            r["cell"]
        );
        let text = r["implementation"]["prefill_attention"]
            .as_str()
            .map(str::to_string);
        match model.as_str() {
            "auto" => {
                let text = text.unwrap();
                assert!(text.starts_with("plain: "), "{text}");
                assert!(
                    text.contains(
                        "prefill_attention = \"auto\": plain, as this cell runs on the CPU"
                    ),
                    "{text}"
                );
            }
            "plain" => {
                let text = text.unwrap();
                assert!(
                    text.starts_with("plain: ") && !text.contains("auto"),
                    "{text}"
                );
            }
            _ => assert_eq!(text, None, "the crate's model has one attention"),
        }
        ids.insert(
            (model, precision),
            r["cell"]["id"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(ids.len(), 6);
    // The auto and plain models differ only by name here, so their ids differ; what the key
    // adds to an id is checked below with one name.
    let cpu = cells(Target::Cpu, MODELS);
    for ((model, precision), recorded) in &ids {
        assert_eq!(
            recorded,
            &id(&cpu, model, precision),
            "the plan's id is the record's"
        );
    }
}

/// The ids: a cell that auto resolves to flash (bf16 on CUDA) gets a new id, so resuming a run
/// of plain records never takes one of them for it; the cells that stay plain (fp32, the CPU,
/// an explicit plain, the crate's model) keep the ids they had before auto existed; an auto cell
/// resolved to flash is the same cell as one written flash.
#[test]
fn only_cells_whose_prefill_turns_flash_change_id() {
    let auto_cuda = cells(Target::Cuda, MODELS);
    let auto_cpu = cells(Target::Cpu, MODELS);
    let written = |value: &str| {
        MODELS.replacen(
            "implementation = \"own\"\n",
            &format!("implementation = \"own\"\nprefill_attention = \"{value}\"\n"),
            1,
        )
    };
    let plain_cuda = cells(Target::Cuda, &written("plain"));
    let flash_cuda = cells(Target::Cuda, &written("flash"));

    let bf16 = auto_cuda
        .iter()
        .find(|c| c.model == "auto" && c.precision.name() == "bf16")
        .unwrap();
    assert!(!bf16.prefill_attention.is_plain());
    let json = serde_json::to_value(bf16).unwrap();
    assert_eq!(json["prefill_attention"], "flash", "{json}");

    // bf16 on CUDA: flash, a new id, the one an explicit flash gives.
    assert_ne!(
        id(&auto_cuda, "auto", "bf16"),
        id(&plain_cuda, "auto", "bf16")
    );
    assert_ne!(
        id(&auto_cuda, "auto", "bf16"),
        id(&auto_cpu, "auto", "bf16")
    );
    assert_eq!(
        id(&auto_cuda, "auto", "bf16"),
        id(&flash_cuda, "auto", "bf16")
    );
    // Plain wherever flash cannot run or was not asked for: the ids plain cells always had.
    assert_eq!(
        id(&auto_cuda, "auto", "fp32"),
        id(&plain_cuda, "auto", "fp32")
    );
    assert_eq!(
        id(&auto_cpu, "auto", "bf16"),
        id(&plain_cuda, "auto", "bf16")
    );
    for precision in ["fp32", "bf16"] {
        assert_eq!(
            id(&auto_cuda, "plain", precision),
            id(&auto_cpu, "plain", precision)
        );
        assert_eq!(
            id(&auto_cuda, "crate", precision),
            id(&auto_cpu, "crate", precision)
        );
    }
    // So a CUDA plan shares no id with a CPU run's records of the cells whose prefill changed.
    let cpu_ids: Vec<&str> = auto_cpu.iter().map(|c| c.id.as_str()).collect();
    for c in auto_cuda.iter().filter(|c| !c.prefill_attention.is_plain()) {
        assert!(
            !cpu_ids.contains(&c.id.as_str()),
            "{} {}",
            c.model,
            c.precision.name()
        );
    }
}

/// An explicit flash keeps its meaning: refused where the cells run on the CPU, naming the
/// model's key, before anything is measured.
#[test]
fn explicit_flash_is_refused_on_the_cpu_naming_the_key() {
    let fx = decoder_experiment(
        "auto",
        "[models.\"tiny.flash\"]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\nprefill_attention = \"flash\"\n",
        "model = [\"tiny.flash\"]\nprecision = [\"bf16\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr_of(&out);
    assert!(err.contains("exp.toml"), "{err}");
    assert!(
        err.contains("models.\"tiny.flash\".prefill_attention = \"flash\""),
        "{err}"
    );
    assert!(err.contains("CUDA kernel"), "{err}");
}
