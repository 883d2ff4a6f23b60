//! Every value checked before any model or dataset work, all problems collected into one error,
//! each naming its key and who set it.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::Origin;
use super::suggest::key_path;
use super::{Backend, GpuSet, LoadedExperiment, Preset, SensorKind, DEFAULT_POWERCAP_ROOT};
use crate::error::ConfigError;

/// Safe as one path component on any OS: not empty, letters, digits, `-`, `_`, `.`, no leading dot.
fn is_file_name_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// Upper bounds, each with the reason a larger value cannot be meant: a value past them passes
/// every type check but would panic, abort allocating, or wait for years once the run starts.
/// A pause, warm-up or window longer than a day (the runner turns seconds into timers).
const MAX_SECONDS: f64 = 86_400.0;
/// Loops per window or warm-up: every loop's latency is kept in the record.
const MAX_LOOPS: u32 = 10_000_000;
/// Windows per cell: a confidence interval needs a few, not thousands.
pub const MAX_REPEATS: u32 = 1_000;
/// A batch holds batch_size x seq_len tokens and activations of that size per layer: beyond
/// this no GPU's memory holds them for these models.
const MAX_BATCH_SIZE: i64 = 8_192;
/// A decoder's prompt or generation length: no model the runner builds has a longer context.
const MAX_TOKENS: i64 = 1 << 20;
/// Examples read from the dataset (or used to train and test the probe).
const MAX_EXAMPLES: i64 = 10_000_000;
/// Steps of the probe's training.
const MAX_PROBE_STEPS: i64 = 1_000_000;
/// CPU worker processes, GPU ordinals.
const MAX_WORKERS: usize = 256;
/// experiment.name and model names become file names, with room for the run id and suffixes
/// under the 255-byte limit most file systems have.
const MAX_NAME_LEN: usize = 100;
/// The power sampler's interval: a minute between samples leaves no trace to plot.
const MAX_SAMPLE_INTERVAL_MS: u64 = 60_000;

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
    if name.len() > MAX_NAME_LEN {
        bad(&["experiment", "name"], format!(
            "experiment.name is {} characters long: at most {MAX_NAME_LEN} (it names the results folder, and file names are limited to 255 bytes)",
            name.len()
        ));
    }
    for model_name in c.models.keys() {
        if model_name.len() > MAX_NAME_LEN {
            bad(&["models", model_name], format!(
                "models.{}...: a model name is {} characters long, at most {MAX_NAME_LEN} (it names chart files)",
                &model_name[..model_name.char_indices().nth(20).map_or(model_name.len(), |(i, _)| i)],
                model_name.len()
            ));
        }
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
    if let Some(GpuSet::List(list)) = &c.device.gpus {
        if list.len() > MAX_WORKERS || list.iter().any(|&g| g >= MAX_WORKERS) {
            bad(&["device", "gpus"], format!(
                "device.gpus: at most {MAX_WORKERS} GPUs, ordinals below {MAX_WORKERS} (no host has more)"
            ));
        }
    }
    if c.device.gpu >= MAX_WORKERS {
        bad(
            &["device", "gpu"],
            format!(
                "device.gpu = {}: a CUDA ordinal below {MAX_WORKERS} (`nvidia-smi -L` lists them)",
                c.device.gpu
            ),
        );
    }
    if c.device.cpu_workers > MAX_WORKERS {
        bad(
            &["device", "cpu_workers"],
            format!(
            "device.cpu_workers = {}: at most {MAX_WORKERS} (each is a process sharing this CPU)",
            c.device.cpu_workers
        ),
        );
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
    } else if c.sensor.sample_interval_ms > MAX_SAMPLE_INTERVAL_MS {
        bad(&["sensor", "sample_interval_ms"], format!(
            "sensor.sample_interval_ms = {}: at most {MAX_SAMPLE_INTERVAL_MS} (a minute between power samples leaves no trace; NVML updates every ~100 ms)",
            c.sensor.sample_interval_ms
        ));
    }

    if !c.sensor.powercap_root.is_absolute() {
        bad(
            &["sensor", "powercap_root"],
            format!(
                "sensor.powercap_root = {:?}: give an absolute path (the kernel's is {DEFAULT_POWERCAP_ROOT:?})",
                c.sensor.powercap_root.display().to_string()
            ),
        );
    }
    // RAPL counts a whole CPU package: with several workers measuring at once on one host, no
    // share of it belongs to one cell.
    let workers = match &c.device.gpus {
        Some(GpuSet::List(list)) if list.len() == 1 => None,
        Some(_) => Some("device.gpus"),
        None if c.device.cpu_workers > 1 => Some("device.cpu_workers"),
        None => None,
    };
    if let (Some(key), SensorKind::Rapl | SensorKind::NvmlRapl) = (workers, c.sensor.kind) {
        bad(&["sensor", "kind"], format!(
            "sensor.kind = \"{}\" meters the host's CPU packages and DRAM, which the workers of {key} share while they measure at once: no share of it belongs to one cell; run one device at a time, or set sensor.kind = \"auto\" or \"nvml\" (GPU boards only)",
            c.sensor.kind.name()
        ));
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
        } else if v > MAX_SECONDS {
            bad(&["protocol", key], format!(
                "protocol.{key} = {v}: at most {MAX_SECONDS} seconds (one day); a longer pause or warm-up is surely a typo"
            ));
        }
    }
    if p.min_window_s > MAX_SECONDS {
        bad(
            &["protocol", "min_window_s"],
            format!(
                "protocol.min_window_s = {}: at most {MAX_SECONDS} seconds (one day) per window",
                p.min_window_s
            ),
        );
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
        let (max, why) = if key == "repeats" {
            (
                MAX_REPEATS,
                "windows per cell; a confidence interval needs a few",
            )
        } else {
            (
                MAX_LOOPS,
                "loops; every loop's latency is kept in the record",
            )
        };
        if v == 0 {
            bad(&["protocol", key], format!("protocol.{key} must be >= 1"));
        } else if v > max {
            bad(
                &["protocol", key],
                format!("protocol.{key} = {v}: at most {max} ({why})"),
            );
        }
    }
    if p.steady_tolerance > 10.0 {
        bad(
            &["protocol", "steady_tolerance"],
            format!(
                "protocol.steady_tolerance = {}: at most 10 (1000 %); e.g. 0.10 for 10 %",
                p.steady_tolerance
            ),
        );
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
        } else if limit > MAX_EXAMPLES {
            bad(&["dataset", "limit"], format!(
                "dataset.limit = {limit}: at most {MAX_EXAMPLES} examples (or leave it out to use every example)"
            ));
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
        match (m.encoder(), &m.preset) {
            (Some(_), _) if m.implementation == super::Implementation::Own => bad(
                &["models", model_name, "implementation"],
                format!(
                    "models.{model_name}.implementation = \"own\": it selects the runner's own Llama-family decoder; {:?} is an encoder, which the runner always runs with its own code: leave the key out",
                    m.architecture
                ),
            ),
            (Some(arch), Some(name)) => match Preset::lookup(arch, name) {
                Some(preset) => {
                    max_positions.insert(model_name.clone(), preset.max_position_embeddings);
                }
                None => bad(
                    &["models", model_name, "preset"],
                    format!(
                        "models.{model_name}.preset = {name:?}: unknown preset for {arch:?}; known: {}",
                        Preset::names(arch).join(", ")
                    ),
                ),
            },
            (Some(arch), None) => bad(
                &["models", model_name],
                format!(
                    "models.{model_name}: an encoder needs a preset (its shapes); known for {arch:?}: {}",
                    Preset::names(arch).join(", ")
                ),
            ),
            // A decoder: its architecture and preset are looked up in the decoder zoo when the
            // plan is made (model::decoder), which knows them.
            (None, preset) => {
                if m.weights == "random" && preset.is_none() {
                    bad(&["models", model_name], format!(
                        "models.{model_name}: architecture {:?} with random weights needs a preset (the shapes to build, e.g. \"smollm2-135m\"), or weights = a Hugging Face folder or a .gguf file",
                        m.architecture
                    ));
                }
                if m.head == super::HeadKind::Probe {
                    bad(&["models", model_name, "head"], format!(
                        "models.{model_name}.head = \"probe\": a linear probe classifies an encoder's pooled outputs; {:?} is a decoder (it generates)",
                        m.architecture
                    ));
                }
            }
        }
        if m.weights != "random" {
            let path = loaded.resolve(Path::new(&m.weights));
            let is_gguf = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
            if is_gguf {
                if m.encoder().is_some() {
                    bad(&["models", model_name, "weights"], format!(
                        "models.{model_name}.weights: {} is a .gguf file; the runner's encoders load Hugging Face folders (config.json and model.safetensors)",
                        path.display()
                    ));
                } else if !path.is_file() {
                    bad(&["models", model_name, "weights"], format!(
                        "models.{model_name}.weights: no .gguf file at {} (paths are relative to the experiment file's folder)",
                        path.display()
                    ));
                }
            } else if m.encoder().is_some() {
                for needed in ["config.json", "model.safetensors"] {
                    if !path.join(needed).is_file() {
                        bad(&["models", model_name, "weights"], format!(
                            "models.{model_name}.weights: {} has no {needed} (expected \"random\" or a local Hugging Face folder with config.json and model.safetensors)",
                            path.display()
                        ));
                    }
                }
            } else if !path.join("config.json").is_file() {
                bad(&["models", model_name, "weights"], format!(
                    "models.{model_name}.weights: {} has no config.json (expected \"random\", a local Hugging Face folder with config.json and *.safetensors, or a .gguf file)",
                    path.display()
                ));
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
        for (key, v, max) in [
            ("train_examples", probe.train_examples, MAX_EXAMPLES),
            ("test_examples", probe.test_examples, MAX_EXAMPLES),
            ("steps", probe.steps, MAX_PROBE_STEPS),
        ] {
            if v > max {
                bad(&["models", model_name, "probe", key], format!(
                    "{at}.{key} = {v}: at most {max} (the probe is trained in memory before any cell runs)"
                ));
            }
        }
        if probe.l2.is_finite() && probe.l2 > 1e6 {
            bad(
                &["models", model_name, "probe", "l2"],
                format!(
                    "{at}.l2 = {}: at most 1e6 (a larger penalty leaves every weight at zero)",
                    probe.l2
                ),
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
        } else if b > MAX_BATCH_SIZE {
            bad(
                &["matrix", "batch_size", &i.to_string()],
                too_large_batch(&format!("matrix.batch_size[{i}]"), b),
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
    for (axis, values) in [("prompt_len", &m.prompt_len), ("new_tokens", &m.new_tokens)] {
        for (i, &v) in values.iter().flatten().enumerate() {
            let at = ["matrix", axis, &i.to_string()];
            check_tokens(&mut bad, &at, axis, v);
        }
    }
    for (list, entries) in [("include", &m.include), ("exclude", &m.exclude)] {
        for (i, e) in entries.iter().enumerate() {
            for (axis, value) in [("prompt_len", e.prompt_len), ("new_tokens", e.new_tokens)] {
                if let Some(v) = value {
                    let at = ["matrix", list, &i.to_string(), axis];
                    check_tokens(&mut bad, &at, axis, v);
                }
            }
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
                } else if b > MAX_BATCH_SIZE {
                    bad(
                        &["matrix", list, &i.to_string(), "batch_size"],
                        too_large_batch(&format!("matrix.{list}[{i}].batch_size"), b),
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
    check_quantize(c, &mut bad);
    for (axis, empty) in [
        ("model", m.model.as_ref().is_some_and(Vec::is_empty)),
        ("precision", m.precision.as_ref().is_some_and(Vec::is_empty)),
        (
            "batch_size",
            m.batch_size.as_ref().is_some_and(Vec::is_empty),
        ),
        ("seq_len", m.seq_len.as_ref().is_some_and(Vec::is_empty)),
        (
            "prompt_len",
            m.prompt_len.as_ref().is_some_and(Vec::is_empty),
        ),
        (
            "new_tokens",
            m.new_tokens.as_ref().is_some_and(Vec::is_empty),
        ),
        ("scope", m.scope.as_ref().is_some_and(Vec::is_empty)),
        ("quantize", m.quantize.as_ref().is_some_and(Vec::is_empty)),
        (
            "layer_method",
            m.layer_method.as_ref().is_some_and(Vec::is_empty),
        ),
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

/// `matrix.quantize` (and include/exclude entries' `quantize`): a selection must fit every model
/// the matrix may pair it with, and there must be a quantized precision for it to select in.
fn check_quantize(c: &super::ExperimentConfig, bad: &mut impl FnMut(&[&str], String)) {
    use super::QuantizeSelection;
    let m = &c.matrix;
    let models: Vec<&String> = match &m.model {
        Some(names) => names.iter().collect(),
        None => c.models.keys().collect(),
    };
    // (model name, blocks, layers with linear weights: blocks, pooler/pre-classifier, classifier)
    let shapes: Vec<(&String, usize, usize)> = models
        .iter()
        .filter_map(|name| {
            let section = c.models.get(*name)?;
            let preset = section.encoder_preset()?;
            let head = if section.head == super::HeadKind::Probe {
                1
            } else {
                2
            };
            Some((*name, preset.n_layers, preset.n_layers + head))
        })
        .collect();
    let quantized = m
        .precision
        .iter()
        .flatten()
        .copied()
        .chain(m.include.iter().filter_map(|e| e.precision))
        .any(|p| p.float_path().is_some());
    let mut check = |at: &[&str], key: &str, q: &QuantizeSelection, excluding: bool| {
        for (name, blocks, layers) in &shapes {
            if let Some(block) = q.block_out_of_range(*blocks) {
                bad(at, format!(
                    "{key} = {:?}: block {block} does not exist in model {name:?}, which has {blocks} transformer blocks (blocks:0-{})",
                    q.name(),
                    blocks.saturating_sub(1)
                ));
            }
            if let QuantizeSelection::Top(k) = q {
                if k > layers {
                    bad(at, format!(
                        "{key} = {:?}: model {name:?} has {layers} layers with linear weights to rank (its {blocks} blocks and its head); top:{layers} already quantizes them all",
                        q.name()
                    ));
                }
            }
        }
        // (An exclude entry that names a selection matches nothing then, harmlessly.)
        if !q.is_all() && !quantized && !excluding {
            bad(at, format!(
                "{key} = {:?} selects layers to quantize, but the matrix has no quantized precision (q8_0, q4k-fp16, int8-fp16, fp8-bf16, ...) for it to apply to: add one to matrix.precision, or leave {key} out",
                q.name()
            ));
        }
    };
    for (i, q) in m.quantize.iter().flatten().enumerate() {
        let i = i.to_string();
        check(
            &["matrix", "quantize", &i],
            &format!("matrix.quantize[{i}]"),
            q,
            false,
        );
    }
    for (list, entries) in [("include", &m.include), ("exclude", &m.exclude)] {
        for (i, e) in entries.iter().enumerate() {
            if let Some(q) = &e.quantize {
                let i = i.to_string();
                check(
                    &["matrix", list, &i, "quantize"],
                    &format!("matrix.{list}[{i}].quantize"),
                    q,
                    list == "exclude",
                );
            }
        }
    }
}

fn too_large_batch(key: &str, b: i64) -> String {
    format!(
        "{key} = {b}: at most {MAX_BATCH_SIZE} (a batch's inputs and activations grow with batch_size x seq_len; beyond this they fit no GPU's memory for these models)"
    )
}

/// A decoder's prompt or generation length: at least one token (a decode window holds whole
/// steps, so `new_tokens = 0` would measure nothing), at most [`MAX_TOKENS`]. Whether it fits the
/// model's context is checked with the model, when the plan is made.
fn check_tokens(bad: &mut impl FnMut(&[&str], String), at: &[&str], axis: &str, v: i64) {
    let key = key_path(&at.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    if v < 1 {
        let why = if axis == "new_tokens" {
            "a decode window measures whole decode steps, so at least one token must be generated"
        } else {
            "the prefill needs at least one prompt token"
        };
        bad(at, format!("{key} = {v}: {axis} must be >= 1 ({why})"));
    } else if v > MAX_TOKENS {
        bad(
            at,
            format!("{key} = {v}: at most {MAX_TOKENS} tokens (no decoder has a longer context)"),
        );
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

/// Panics unless every value of a validated experiment is one a run can use: each duration a
/// timer can hold, loop counts and batch shapes whose buffers can be sized. For the fuzz target
/// and tests: validation's bounds must imply these, or a run would panic past them.
pub fn assert_runnable(loaded: &LoadedExperiment) {
    let p = &loaded.config.protocol;
    for s in [
        p.warmup_s,
        p.warmup_max_s,
        p.stabilize_s,
        p.cooldown_s,
        p.idle_settle_s,
        p.idle_baseline_s,
        p.min_window_s,
    ] {
        let _ = std::time::Duration::from_secs_f64(s);
    }
    let loops = u64::from(p.repeats) * u64::from(p.min_loops.max(p.warmup_min_loops));
    assert!(loops <= 1 << 40, "{loops} loops");
    let m = &loaded.config.matrix;
    let batches = m
        .batch_size
        .iter()
        .flatten()
        .chain(m.include.iter().filter_map(|e| e.batch_size.as_ref()));
    for &b in batches {
        assert!((1..=MAX_BATCH_SIZE).contains(&b), "batch_size {b}");
        // A batch's ids and mask at the longest sequence the presets allow.
        let tokens = (b as usize)
            .checked_mul(8192)
            .expect("batch tokens overflow");
        assert!(tokens < 1 << 32);
    }
    assert!(loaded.config.experiment.name.len() <= MAX_NAME_LEN);
}
