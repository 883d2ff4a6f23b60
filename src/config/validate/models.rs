//! `[models.NAME]`: architectures, presets, weights on disk, heads and the linear probe.

use std::collections::BTreeMap;
use std::path::Path;

use super::{MAX_EXAMPLES, MAX_PROBE_STEPS};
use crate::config::suggest::toml_key;
use crate::config::{
    Backend, DecodeKernels, HeadKind, Implementation, LoadedExperiment, PrefillAttention, Preset,
    Scope,
};

/// Checks every model, and returns each encoder's position embeddings (by model name), which
/// bound the matrix's `seq_len`.
pub(super) fn check(
    loaded: &LoadedExperiment,
    bad: &mut impl FnMut(&[&str], String),
) -> BTreeMap<String, usize> {
    let c = &loaded.config;
    if c.models.is_empty() {
        bad(
            &["models"],
            "no models declared: add a [models.NAME] table".into(),
        );
    }
    let mut max_positions = BTreeMap::new();
    for (model_name, m) in &c.models {
        // As the file writes it: `models."qwen2.5-0.5b"` for a name with dots.
        let model_key = toml_key(&["models", model_name]);
        match (m.encoder(), &m.preset) {
            (Some(_), _) if m.implementation == Implementation::Own => bad(
                &["models", model_name, "implementation"],
                format!(
                    "{model_key}.implementation = \"own\": it selects the runner's own Llama-family decoder; {:?} is an encoder, which the runner always runs with its own code: leave the key out",
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
                        "{model_key}.preset = {name:?}: unknown preset for {arch:?}; known: {}",
                        Preset::names(arch).join(", ")
                    ),
                ),
            },
            (Some(arch), None) => bad(
                &["models", model_name],
                format!(
                    "{model_key}: an encoder needs a preset (its shapes); known for {arch:?}: {}",
                    Preset::names(arch).join(", ")
                ),
            ),
            // A decoder: its architecture and preset are looked up in the decoder zoo when the
            // plan is made (model::decoder), which knows them.
            (None, preset) => {
                if c.device.fused_embeddings == Some(true) {
                    bad(&["device", "fused_embeddings"], format!(
                        "device.fused_embeddings = true fuses an encoder's embeddings; {model_key} ({:?}) is a decoder, which has none of that kind: run it in an experiment without the key",
                        m.architecture
                    ));
                }
                if !c.device.ffn_activation_scales.is_dynamic() {
                    bad(&["device", "ffn_activation_scales"], format!(
                        "device.ffn_activation_scales = \"static\" calibrates an encoder's FFN; {model_key} ({:?}) is a decoder: run it in an experiment without the key",
                        m.architecture
                    ));
                }
                if !c.device.attention_activation_scales.is_dynamic() {
                    bad(&["device", "attention_activation_scales"], format!(
                        "device.attention_activation_scales = \"static\" calibrates an encoder's attention; {model_key} ({:?}) is a decoder: run it in an experiment without the key",
                        m.architecture
                    ));
                }
                if m.weights == "random" && preset.is_none() {
                    bad(&["models", model_name], format!(
                        "{model_key}: architecture {:?} with random weights needs a preset (the shapes to build, e.g. \"smollm2-135m\"), or weights = a Hugging Face folder or a .gguf file",
                        m.architecture
                    ));
                }
                if m.head == HeadKind::Probe {
                    bad(&["models", model_name, "head"], format!(
                        "{model_key}.head = \"probe\": a linear probe classifies an encoder's pooled outputs; {:?} is a decoder (it generates)",
                        m.architecture
                    ));
                }
            }
        }
        if let Some(layers) = m.layers {
            let key = ["models", model_name, "layers"];
            if m.encoder().is_some() {
                bad(&key, format!(
                    "{model_key}.layers: a shallow cut applies to decoders; {:?} is an encoder: leave the key out",
                    m.architecture
                ));
            } else if m.weights != "random" {
                bad(&key, format!(
                    "{model_key}.layers = {layers}: a cut of a checkpoint's layers is not the model it stores; the key applies to random weights (a preset's shapes): leave it out with weights = {:?}",
                    m.weights
                ));
            } else if layers < 1 {
                bad(&key, format!(
                    "{model_key}.layers = {layers}: a decoder keeps at least one layer (the preset's first N; leave the key out for all of them)"
                ));
            }
        }
        // `auto` runs plain wherever flash cannot; only an explicit flash is refused.
        if m.prefill_attention == PrefillAttention::Flash {
            let key = ["models", model_name, "prefill_attention"];
            if m.encoder().is_some() || m.implementation != Implementation::Own {
                bad(&key, format!(
                    "{model_key}.prefill_attention = \"flash\": the flash prefill attention belongs to the runner's own Llama-family decoder: add implementation = \"own\" (llama, mistral, qwen2, qwen3), or leave the key out"
                ));
            } else if c.device.backend == Backend::Cpu {
                bad(&key, format!(
                    "{model_key}.prefill_attention = \"flash\": the flash prefill attention is a CUDA kernel and device.backend = \"cpu\": leave the key out (auto: plain on the CPU) or write \"plain\""
                ));
            }
        }
        if m.decode_kernels != DecodeKernels::Plain {
            let kernels = m.decode_kernels.name();
            let key = ["models", model_name, "decode_kernels"];
            if m.encoder().is_some() || m.implementation != Implementation::Own {
                bad(&key, format!(
                    "{model_key}.decode_kernels = \"{kernels}\": the fused decode kernels belong to the runner's own Llama-family decoder: add implementation = \"own\" (llama, mistral, qwen2, qwen3), or leave the key out"
                ));
            } else if c.device.backend == Backend::Cpu {
                bad(&key, format!(
                    "{model_key}.decode_kernels = \"{kernels}\": the fused decode kernels are CUDA kernels and device.backend = \"cpu\": leave the key out (the plain kernels run on the CPU)"
                ));
            }
            let most = DecodeKernels::GEMV_MAX_BATCH;
            if m.decode_kernels.is_gemv() {
                if let Some(b) = c
                    .matrix
                    .batch_size
                    .iter()
                    .flatten()
                    .find(|&&b| b > most as i64)
                {
                    bad(&key, format!(
                        "{model_key}.decode_kernels = \"{kernels}\": the decode GEMV serves batches of 1..={most} and matrix.batch_size holds {b}: use decode_kernels = \"fused\" for larger batches"
                    ));
                }
                if c.matrix.scope.iter().flatten().any(|s| *s == Scope::Layers) {
                    bad(&key, format!(
                        "{model_key}.decode_kernels = \"{kernels}\" adds each layer into one preallocated residual stream, so its decode layers cannot run alone and matrix.scope holds \"layers\": measure per-layer energy with decode_kernels = \"fused\""
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
                        "{model_key}.weights: {} is a .gguf file; the runner's encoders load Hugging Face folders (config.json and model.safetensors)",
                        path.display()
                    ));
                } else if !path.is_file() {
                    bad(&["models", model_name, "weights"], format!(
                        "{model_key}.weights: no .gguf file at {} (paths are relative to the experiment file's folder)",
                        path.display()
                    ));
                }
            } else if m.encoder().is_some() {
                for needed in ["config.json", "model.safetensors"] {
                    if !path.join(needed).is_file() {
                        bad(&["models", model_name, "weights"], format!(
                            "{model_key}.weights: {} has no {needed} (expected \"random\" or a local Hugging Face folder with config.json and model.safetensors)",
                            path.display()
                        ));
                    }
                }
            } else if !path.join("config.json").is_file() {
                bad(&["models", model_name, "weights"], format!(
                    "{model_key}.weights: {} has no config.json (expected \"random\", a local Hugging Face folder with config.json and *.safetensors, or a .gguf file)",
                    path.display()
                ));
            }
        }
        let probe = &m.probe;
        let at = format!("{model_key}.probe");
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
    max_positions
}
