//! Every value checked before any model or dataset work, all problems collected into one error,
//! each naming its key and who set it.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::Origin;
use super::suggest::key_path;
use super::{Backend, GpuSet, LoadedExperiment, Preset};
use crate::error::ConfigError;

/// Safe as one path component on any OS: not empty, letters, digits, `-`, `_`, `.`, no leading dot.
fn is_file_name_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// Checks every value before any model work. Collects all problems, each with its key.
pub(super) fn validate(loaded: &LoadedExperiment, origin: &Origin<'_>) -> Result<(), ConfigError> {
    let c = &loaded.config;
    let mut problems = Vec::new();
    // Each problem names the key it is about, so the message can say who set it and where.
    let mut bad = |at: &[&str], msg: String| {
        let path: Vec<String> = at.iter().map(|p| p.to_string()).collect();
        problems.push(format!("{}: {msg}", origin.of(&path)));
    };

    let name = &c.experiment.name;
    if !is_file_name_safe(name) {
        bad(&["experiment", "name"], format!(
            "experiment.name = {name:?}: use letters, digits, '-', '_' and '.' only (it names the results folder)"
        ));
    }
    for model_name in c.models.keys() {
        if !is_file_name_safe(model_name) {
            bad(&["models", model_name], format!(
                "models.{model_name:?}: model names may hold letters, digits, '-', '_' and '.' only, not starting with '.' (they name chart files)"
            ));
        }
    }

    if c.device.backend == Backend::Cuda && !cfg!(feature = "cuda") {
        bad(&["device", "backend"], "device.backend = \"cuda\" but this runner was built without CUDA: build it with scripts/build-cuda.sh (or `cargo build --release --features cuda`), or set device.backend = \"auto\" or \"cpu\"".into());
    }
    if let Some(gpus) = &c.device.gpus {
        match gpus {
            GpuSet::Named(name) if name != "all" => bad(&["device", "gpus"], format!(
                "device.gpus = {name:?}: use a list of CUDA ordinals such as [0, 1], or \"all\""
            )),
            GpuSet::List(list) if list.is_empty() => bad(&["device", "gpus"],
                "device.gpus = []: list at least one GPU (e.g. [0, 1]), or leave device.gpus out to use device.gpu".into()),
            GpuSet::List(list) => {
                let mut seen = std::collections::BTreeSet::new();
                if let Some(dup) = list.iter().find(|g| !seen.insert(**g)) {
                    bad(&["device", "gpus"], format!(
                        "device.gpus lists GPU {dup} twice: each GPU runs one worker, and two cells on one GPU would disturb each other's measurements"
                    ));
                }
            }
            GpuSet::Named(_) => {}
        }
        if c.device.backend == Backend::Cpu {
            bad(&["device", "gpus"], "device.gpus names GPUs but device.backend = \"cpu\": set device.backend = \"cuda\" (or \"auto\"), or use device.cpu_workers for several CPU workers".into());
        } else if !cfg!(feature = "cuda") {
            bad(&["device", "gpus"], "device.gpus names GPUs but this runner was built without CUDA: build it with scripts/build-cuda.sh, or leave device.gpus out".into());
        }
    }
    if c.device.cpu_workers == 0 {
        bad(
            &["device", "cpu_workers"],
            "device.cpu_workers = 0: at least one worker must measure".into(),
        );
    } else if c.device.cpu_workers > 1 && c.device.backend != Backend::Cpu {
        bad(&["device", "cpu_workers"], format!(
            "device.cpu_workers = {} needs device.backend = \"cpu\" (CPU workers stand in for GPUs in tests); on GPUs use device.gpus = [0, 1, ...]",
            c.device.cpu_workers
        ));
    }
    if c.sensor.sample_interval_ms == 0 {
        bad(
            &["sensor", "sample_interval_ms"],
            "sensor.sample_interval_ms must be >= 1".into(),
        );
    }

    let p = &c.protocol;
    let seconds = [
        ("warmup_s", p.warmup_s),
        ("warmup_max_s", p.warmup_max_s),
        ("stabilize_s", p.stabilize_s),
        ("cooldown_s", p.cooldown_s),
        ("idle_settle_s", p.idle_settle_s),
        ("idle_baseline_s", p.idle_baseline_s),
    ];
    for (key, v) in seconds {
        if !(v.is_finite() && v >= 0.0) {
            bad(
                &["protocol", key],
                format!("protocol.{key} = {v}: must be a number of seconds >= 0"),
            );
        }
    }
    if !(p.min_window_s.is_finite() && p.min_window_s > 0.0) {
        bad(&["protocol", "min_window_s"], format!(
            "protocol.min_window_s = {}: must be > 0 seconds (a window of zero length measures nothing)",
            p.min_window_s
        ));
    }
    if p.warmup_max_s < p.warmup_s {
        bad(
            &["protocol", "warmup_max_s"],
            format!(
                "protocol.warmup_max_s = {} is shorter than protocol.warmup_s = {}",
                p.warmup_max_s, p.warmup_s
            ),
        );
    }
    if !(p.steady_tolerance.is_finite() && p.steady_tolerance > 0.0) {
        bad(
            &["protocol", "steady_tolerance"],
            format!(
                "protocol.steady_tolerance = {}: must be > 0 (e.g. 0.10 for 10 %)",
                p.steady_tolerance
            ),
        );
    }
    for (key, v) in [
        ("min_loops", p.min_loops),
        ("repeats", p.repeats),
        ("warmup_min_loops", p.warmup_min_loops),
    ] {
        if v == 0 {
            bad(&["protocol", key], format!("protocol.{key} must be >= 1"));
        }
    }

    let dataset = loaded.resolve(&c.dataset.path);
    if !dataset.is_file() {
        bad(&["dataset", "path"], format!(
            "dataset.path: no dataset file at {} (paths are relative to the experiment file's folder)",
            dataset.display()
        ));
    }
    let tokenizer = loaded.resolve(&c.dataset.tokenizer);
    if !tokenizer.is_file() {
        bad(
            &["dataset", "tokenizer"],
            format!(
                "dataset.tokenizer: no tokenizer file (vocab.txt or tokenizer.json) at {}",
                tokenizer.display()
            ),
        );
    }
    if let Some(limit) = c.dataset.limit {
        if limit < 1 {
            bad(
                &["dataset", "limit"],
                format!("dataset.limit = {limit}: must be >= 1 (or left out to use every example)"),
            );
        }
    }

    if c.models.is_empty() {
        bad(
            &["models"],
            "no models declared: add a [models.NAME] table".into(),
        );
    }
    let mut max_positions = BTreeMap::new();
    for (model_name, m) in &c.models {
        match Preset::lookup(m.architecture, &m.preset) {
            Some(preset) => {
                max_positions.insert(model_name.clone(), preset.max_position_embeddings);
            }
            None => bad(
                &["models", model_name, "preset"],
                format!(
                    "models.{model_name}.preset = {:?}: unknown preset for {:?}; known: {}",
                    m.preset,
                    m.architecture,
                    Preset::names(m.architecture).join(", ")
                ),
            ),
        }
        if m.weights != "random" {
            let dir = loaded.resolve(Path::new(&m.weights));
            for needed in ["config.json", "model.safetensors"] {
                if !dir.join(needed).is_file() {
                    bad(&["models", model_name, "weights"], format!(
                        "models.{model_name}.weights: {} has no {needed} (expected \"random\" or a local Hugging Face folder with config.json and model.safetensors)",
                        dir.display()
                    ));
                }
            }
        }
        let probe = &m.probe;
        let at = format!("models.{model_name}.probe");
        if probe.train_examples < 2 {
            bad(&["models", model_name, "probe", "train_examples"], format!(
                "{at}.train_examples = {}: must be >= 2 (a classifier needs examples of both labels)",
                probe.train_examples
            ));
        }
        if probe.test_examples < 1 {
            bad(
                &["models", model_name, "probe", "test_examples"],
                format!("{at}.test_examples = {}: must be >= 1", probe.test_examples),
            );
        }
        if !(probe.l2.is_finite() && probe.l2 >= 0.0) {
            bad(
                &["models", model_name, "probe", "l2"],
                format!("{at}.l2 = {}: must be a finite number >= 0", probe.l2),
            );
        }
        if probe.steps < 1 {
            bad(
                &["models", model_name, "probe", "steps"],
                format!("{at}.steps = {}: must be >= 1", probe.steps),
            );
        }
    }

    let m = &c.matrix;
    let declared = |name: &str| c.models.contains_key(name);
    let known_models = c.models.keys().cloned().collect::<Vec<_>>().join(", ");
    let smallest_max_pos = max_positions.values().copied().min().unwrap_or(usize::MAX);
    for (i, name) in m.model.iter().flatten().enumerate() {
        if !declared(name) {
            bad(
                &["matrix", "model", &i.to_string()],
                format!(
                    "matrix.model[{i}] = {name:?} is not declared; declared models: {known_models}"
                ),
            );
        }
    }
    for (i, &b) in m.batch_size.iter().flatten().enumerate() {
        if b < 1 {
            bad(
                &["matrix", "batch_size", &i.to_string()],
                format!("batch_size must be >= 1 (matrix.batch_size[{i}] = {b})"),
            );
        }
    }
    for (i, &s) in m.seq_len.iter().flatten().enumerate() {
        check_seq_len(
            &mut bad,
            &["matrix", "seq_len", &i.to_string()],
            s,
            smallest_max_pos,
        );
    }
    for (list, entries) in [("include", &m.include), ("exclude", &m.exclude)] {
        for (i, e) in entries.iter().enumerate() {
            if let Some(name) = &e.model {
                if !declared(name) {
                    bad(&["matrix", list, &i.to_string(), "model"], format!(
                        "matrix.{list}[{i}].model = {name:?} is not declared; declared models: {known_models}"
                    ));
                }
            }
            if let Some(b) = e.batch_size {
                if b < 1 {
                    bad(
                        &["matrix", list, &i.to_string(), "batch_size"],
                        format!("batch_size must be >= 1 (matrix.{list}[{i}].batch_size = {b})"),
                    );
                }
            }
            if let Some(s) = e.seq_len {
                let limit = e
                    .model
                    .as_ref()
                    .and_then(|n| max_positions.get(n).copied())
                    .unwrap_or(smallest_max_pos);
                let at = ["matrix", list, &i.to_string(), "seq_len"];
                check_seq_len(&mut bad, &at, s, limit);
            }
        }
    }
    for (axis, empty) in [
        ("model", m.model.as_ref().is_some_and(Vec::is_empty)),
        ("precision", m.precision.as_ref().is_some_and(Vec::is_empty)),
        (
            "batch_size",
            m.batch_size.as_ref().is_some_and(Vec::is_empty),
        ),
        ("seq_len", m.seq_len.as_ref().is_some_and(Vec::is_empty)),
        ("scope", m.scope.as_ref().is_some_and(Vec::is_empty)),
    ] {
        if empty {
            bad(
                &["matrix", axis],
                format!(
                    "matrix.{axis} is an empty list: give at least one value or leave the key out"
                ),
            );
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

fn check_seq_len(bad: &mut impl FnMut(&[&str], String), at: &[&str], s: i64, max_positions: usize) {
    // `matrix.seq_len[0]` or `matrix.include[1].seq_len`, as the user would write it.
    let key = key_path(&at.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    if s < 2 {
        bad(
            at,
            format!("{key} = {s}: seq_len must be >= 2 (room for [CLS] and [SEP])"),
        );
    } else if s as u64 > max_positions as u64 {
        bad(
            at,
            format!("{key} = {s}: seq_len exceeds the model's {max_positions} position embeddings"),
        );
    }
}
