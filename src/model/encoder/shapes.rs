//! The encoders' checkpoints: every tensor's name and shape in Hugging Face's layout, seeded random
//! weights initialised as Hugging Face does, and config.json read and written.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde_json::json;

use crate::config::Architecture;
use crate::model::preset::Preset;
use crate::model::weights::random::normal_values;

/// Every tensor of the checkpoint with its shape, in Hugging Face naming:
/// `DistilBertForSequenceClassification` or `BertForSequenceClassification`.
pub fn tensor_shapes(p: &Preset) -> Vec<(String, Vec<usize>)> {
    match p.architecture {
        Architecture::Distilbert => distilbert_shapes(p),
        Architecture::Bert => bert_shapes(p),
    }
}

fn distilbert_shapes(p: &Preset) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![
        (
            "distilbert.embeddings.word_embeddings.weight".to_string(),
            vec![p.vocab_size, p.dim],
        ),
        (
            "distilbert.embeddings.position_embeddings.weight".to_string(),
            vec![p.max_position_embeddings, p.dim],
        ),
        (
            "distilbert.embeddings.LayerNorm.weight".to_string(),
            vec![p.dim],
        ),
        (
            "distilbert.embeddings.LayerNorm.bias".to_string(),
            vec![p.dim],
        ),
    ];
    for i in 0..p.n_layers {
        let l = format!("distilbert.transformer.layer.{i}");
        for lin in ["q_lin", "k_lin", "v_lin", "out_lin"] {
            out.push((format!("{l}.attention.{lin}.weight"), vec![p.dim, p.dim]));
            out.push((format!("{l}.attention.{lin}.bias"), vec![p.dim]));
        }
        out.push((format!("{l}.ffn.lin1.weight"), vec![p.hidden_dim, p.dim]));
        out.push((format!("{l}.ffn.lin1.bias"), vec![p.hidden_dim]));
        out.push((format!("{l}.ffn.lin2.weight"), vec![p.dim, p.hidden_dim]));
        out.push((format!("{l}.ffn.lin2.bias"), vec![p.dim]));
        for norm in ["sa_layer_norm", "output_layer_norm"] {
            out.push((format!("{l}.{norm}.weight"), vec![p.dim]));
            out.push((format!("{l}.{norm}.bias"), vec![p.dim]));
        }
    }
    out.push(("pre_classifier.weight".into(), vec![p.dim, p.dim]));
    out.push(("pre_classifier.bias".into(), vec![p.dim]));
    out.push(("classifier.weight".into(), vec![p.num_labels, p.dim]));
    out.push(("classifier.bias".into(), vec![p.num_labels]));
    out
}

fn bert_shapes(p: &Preset) -> Vec<(String, Vec<usize>)> {
    let e = "bert.embeddings";
    let mut out = vec![
        (
            format!("{e}.word_embeddings.weight"),
            vec![p.vocab_size, p.dim],
        ),
        (
            format!("{e}.position_embeddings.weight"),
            vec![p.max_position_embeddings, p.dim],
        ),
        (
            format!("{e}.token_type_embeddings.weight"),
            vec![p.type_vocab_size, p.dim],
        ),
        (format!("{e}.LayerNorm.weight"), vec![p.dim]),
        (format!("{e}.LayerNorm.bias"), vec![p.dim]),
    ];
    let mut linear = |name: String, out_dim: usize, in_dim: usize| {
        out.push((format!("{name}.weight"), vec![out_dim, in_dim]));
        out.push((format!("{name}.bias"), vec![out_dim]));
    };
    for i in 0..p.n_layers {
        let l = format!("bert.encoder.layer.{i}");
        for lin in ["self.query", "self.key", "self.value", "output.dense"] {
            linear(format!("{l}.attention.{lin}"), p.dim, p.dim);
        }
        linear(format!("{l}.intermediate.dense"), p.hidden_dim, p.dim);
        linear(format!("{l}.output.dense"), p.dim, p.hidden_dim);
    }
    linear("bert.pooler.dense".into(), p.dim, p.dim);
    linear("classifier".into(), p.num_labels, p.dim);
    // The layer norms after the closure, which holds `out` mutably while it lives.
    for i in 0..p.n_layers {
        let l = format!("bert.encoder.layer.{i}");
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            out.push((format!("{l}.{norm}.weight"), vec![p.dim]));
            out.push((format!("{l}.{norm}.bias"), vec![p.dim]));
        }
    }
    out
}

/// Seeded random f32 weights on the CPU, initialised as Hugging Face does: normal(0,
/// initializer_range) for linear and embedding weights, zero biases, unit layer-norm scales, and a
/// zero padding row (id 0) in the word embeddings. Each tensor has its own stream derived from
/// (seed, name), so the values do not depend on generation order, device or precision.
pub fn random_tensors(p: &Preset, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    for (name, shape) in tensor_shapes(p) {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; count]
        } else if name.contains("LayerNorm") || name.contains("layer_norm") {
            vec![1.0; count]
        } else {
            let mut v = normal_values(seed, &name, count, p.initializer_range as f32)?;
            if name.ends_with("word_embeddings.weight") {
                v[..p.dim].fill(0.0);
            }
            v
        };
        tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(tensors)
}

/// Reads a Hugging Face config.json and checks it describes the declared preset. `with_head`:
/// the checkpoint's classifier is used, so its label count must match too.
pub fn check_hf_config(dir: &Path, preset: &Preset, with_head: bool) -> Result<()> {
    let path = dir.join("config.json");
    let text = crate::files::read_text(&path, crate::files::limit::MODEL_CONFIG, "config.json")?;
    let cfg: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let get = |key: &str| cfg.get(key).and_then(|v| v.as_u64());
    let num_labels = cfg
        .get("id2label")
        .and_then(|m| m.as_object())
        .map(|m| m.len() as u64)
        .or_else(|| get("num_labels"))
        .unwrap_or(2);
    // DistilBertConfig and BertConfig name the same shapes differently.
    let keys = match preset.architecture {
        Architecture::Distilbert => ["dim", "n_layers", "n_heads", "hidden_dim"],
        Architecture::Bert => [
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        ],
    };
    let mut fields = vec![
        ("vocab_size", get("vocab_size"), p64(preset.vocab_size)),
        (keys[0], get(keys[0]), p64(preset.dim)),
        (keys[1], get(keys[1]), p64(preset.n_layers)),
        (keys[2], get(keys[2]), p64(preset.n_heads)),
        (keys[3], get(keys[3]), p64(preset.hidden_dim)),
        (
            "max_position_embeddings",
            get("max_position_embeddings"),
            p64(preset.max_position_embeddings),
        ),
    ];
    if preset.architecture == Architecture::Bert {
        fields.push((
            "type_vocab_size",
            get("type_vocab_size"),
            p64(preset.type_vocab_size),
        ));
    }
    refuse_unimplemented(&cfg, &path, preset)?;
    if with_head {
        fields.push((
            "num_labels (id2label)",
            Some(num_labels),
            p64(preset.num_labels),
        ));
    }
    let arch = format!("{:?}", preset.architecture).to_lowercase();
    for (key, found, expected) in fields {
        match found {
            Some(v) if v == expected => {}
            Some(v) => bail!(
                "{}: {key} is {v} but the declared preset has {expected}; set the model's preset to the checkpoint's architecture",
                path.display()
            ),
            None => bail!(
                "{}: missing {key}: is this a {arch} config.json (the model's architecture)?",
                path.display()
            ),
        }
    }
    Ok(())
}

/// Settings of config.json that change what the model computes and that the runner's
/// implementation does not honour: refused, never ignored (a ReLU checkpoint run with GELU would
/// measure another model). A key left out takes Hugging Face's default, which is what runs.
fn refuse_unimplemented(cfg: &serde_json::Value, path: &Path, preset: &Preset) -> Result<()> {
    let text = |key: &str| cfg.get(key).map(|v| v.as_str().map(str::to_string));
    let (act_key, runs) = match preset.architecture {
        Architecture::Distilbert => ("activation", "DistilBERT"),
        Architecture::Bert => ("hidden_act", "BERT"),
    };
    // BERT's config always names it; DistilBERT's default is "gelu".
    let act = match (text(act_key), preset.architecture) {
        (None, Architecture::Distilbert) => Some("gelu".to_string()),
        (None, Architecture::Bert) => None,
        (Some(v), _) => v,
    };
    if act.as_deref() != Some("gelu") {
        bail!(
            "{}: {act_key} is {}; the runner's {runs} implements \"gelu\" (erf) only: it would run another activation than the checkpoint was trained with",
            path.display(),
            act.map_or("missing or not a string".to_string(), |a| format!("{a:?}"))
        );
    }
    if let Some(kind) = text("position_embedding_type") {
        if kind.as_deref() != Some("absolute") {
            bail!(
                "{}: position_embedding_type is {kind:?}; the runner implements \"absolute\" (learned) position embeddings only",
                path.display()
            );
        }
    }
    if let Some(eps) = cfg.get("layer_norm_eps") {
        let ok = eps
            .as_f64()
            .is_some_and(|e| (e - preset.layer_norm_eps).abs() <= preset.layer_norm_eps * 1e-6);
        if !ok {
            bail!(
                "{}: layer_norm_eps is {eps}, but the declared preset normalizes with {:e}; set the preset that matches the checkpoint",
                path.display(),
                preset.layer_norm_eps
            );
        }
    }
    Ok(())
}

/// Checks a checkpoint's tensors (its safetensors index) against what the encoder loads: every
/// tensor it needs, with the shape the preset gives it (the head only when it is used; BERT's
/// `bert.` prefix where the checkpoint has it). Extra tensors are ignored, as the loader ignores
/// them.
pub fn check_checkpoint_tensors(
    path: &Path,
    index: &std::collections::BTreeMap<String, crate::model::weights::TensorEntry>,
    preset: &Preset,
    with_head: bool,
) -> Result<()> {
    let bert_prefixed = index.contains_key("bert.embeddings.word_embeddings.weight");
    let mut problems = Vec::new();
    for (name, shape) in tensor_shapes(preset) {
        let head = name.starts_with("classifier")
            || name.starts_with("pre_classifier")
            || name.starts_with("bert.pooler");
        if head && !with_head {
            continue;
        }
        let name = match name.strip_prefix("bert.") {
            Some(bare) if !bert_prefixed => bare.to_string(),
            _ => name,
        };
        match index.get(&name) {
            None => problems.push(format!("{name} is missing")),
            Some(t) if t.shape != shape => problems.push(format!(
                "{name} has shape {:?}, the preset's model needs {shape:?}",
                t.shape
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(3);
    bail!(
        "{}: {}{}: the weights do not fit the declared preset; set the model's preset to the checkpoint's architecture",
        path.display(),
        problems[..problems.len().min(3)].join("; "),
        if more > 0 { format!(" (and {more} more)") } else { String::new() }
    )
}

fn p64(v: usize) -> u64 {
    v as u64
}

/// Writes weights in the Hugging Face layout (config.json + model.safetensors), as a
/// `DistilBertForSequenceClassification` or `BertForSequenceClassification` checkpoint would be.
pub fn save_hf_dir(dir: &Path, preset: &Preset, tensors: &HashMap<String, Tensor>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let id2label: serde_json::Map<String, serde_json::Value> = (0..preset.num_labels)
        .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
        .collect();
    let config = match preset.architecture {
        Architecture::Distilbert => json!({
            "architectures": ["DistilBertForSequenceClassification"],
            "model_type": "distilbert",
            "activation": "gelu",
            "vocab_size": preset.vocab_size,
            "dim": preset.dim,
            "n_layers": preset.n_layers,
            "n_heads": preset.n_heads,
            "hidden_dim": preset.hidden_dim,
            "max_position_embeddings": preset.max_position_embeddings,
            "initializer_range": preset.initializer_range,
            "pad_token_id": 0,
            "sinusoidal_pos_embds": false,
            "id2label": id2label,
        }),
        Architecture::Bert => json!({
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
            "hidden_act": "gelu",
            "vocab_size": preset.vocab_size,
            "hidden_size": preset.dim,
            "num_hidden_layers": preset.n_layers,
            "num_attention_heads": preset.n_heads,
            "intermediate_size": preset.hidden_dim,
            "max_position_embeddings": preset.max_position_embeddings,
            "type_vocab_size": preset.type_vocab_size,
            "layer_norm_eps": preset.layer_norm_eps,
            "initializer_range": preset.initializer_range,
            "pad_token_id": 0,
            "id2label": id2label,
        }),
    };
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    candle_core::safetensors::save(tensors, dir.join("model.safetensors"))
        .with_context(|| format!("writing {}", dir.join("model.safetensors").display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_are_seeded_and_order_independent() {
        let p = Preset::DISTILBERT_TINY;
        let a = random_tensors(&p, 7).unwrap();
        let b = random_tensors(&p, 7).unwrap();
        let c = random_tensors(&p, 8).unwrap();
        let name = "distilbert.transformer.layer.1.ffn.lin1.weight";
        let va: Vec<f32> = a[name].flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = b[name].flatten_all().unwrap().to_vec1().unwrap();
        let vc: Vec<f32> = c[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        // The initialiser's spread is the preset's.
        let std = (va.iter().map(|x| x * x).sum::<f32>() / va.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "std {std}");
        assert_eq!(a.len(), tensor_shapes(&p).len());
    }
}
