//! A cell's identity: the id that hashes everything that shapes what the cell measures, the
//! parts of it a run's cells share, and the execution settings among them.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Cell;
use crate::config::{LoadedExperiment, Precision};
use crate::model::{hex, ModelSpec};

/// Whether two plans hold the same cells in the same order (a run directory's and the one an
/// experiment file gives now).
pub fn same_cells(a: &[Cell], b: &[Cell]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id == y.id)
}

/// Whether `id` looks like an id [`cell_id`] makes (12 lowercase hex digits). Ids name record,
/// trace and chart files, so one read back from disk is checked before it is used in a path.
pub fn is_cell_id(id: &str) -> bool {
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The parts of a cell's identity shared by all cells of a run.
pub(super) struct IdContext {
    protocol: Value,
    /// `protocol.layer_isolation` resolved: it changes what a decoder's isolated units measure,
    /// so it is in those cells' ids only (see [`cell_id`]), not in every cell's protocol.
    layer_isolation: crate::config::LayerIsolation,
    dataset: Value,
    weights: BTreeMap<String, String>,
    device: crate::config::DeviceSection,
    /// Where the cells run: `prefill_attention = "auto"` resolves by it.
    pub(super) target: super::Target,
}

impl IdContext {
    pub(super) fn new(exp: &LoadedExperiment, target: super::Target) -> anyhow::Result<Self> {
        let d = &exp.config.dataset;
        // Read as they will be used: regular files within their limits.
        let digest = |path: &std::path::Path, max: u64, what: &str| -> anyhow::Result<String> {
            let bytes = crate::files::read(path, max, what)?;
            Ok(hex(&Sha256::digest(bytes))[..16].to_string())
        };
        use crate::files::limit;
        let dataset = json!({
            "sha256": digest(&exp.resolve(&d.path), limit::DATASET, "dataset")?,
            "format": d.format,
            "tokenizer_sha256": digest(&exp.resolve(&d.tokenizer), limit::TOKENIZER, "tokenizer")?,
            "limit": d.limit,
        });
        let mut weights = BTreeMap::new();
        for (name, section) in &exp.config.models {
            let spec = ModelSpec::resolve(name, section, exp)?;
            let identity = spec
                .weights_identity()
                .with_context(|| crate::config::toml_key(&["models", name, "weights"]))?;
            weights.insert(name.clone(), identity);
        }
        let mut protocol = exp.config.protocol.clone();
        let layer_isolation = protocol
            .layer_isolation
            .take()
            .unwrap_or_else(crate::config::LayerIsolation::decoder_default);
        Ok(Self {
            protocol: serde_json::to_value(&protocol)?,
            layer_isolation,
            dataset,
            weights,
            device: exp.config.device.clone(),
            target,
        })
    }
}

/// The settings of how a cell runs that change what it measures, by name, where they differ from
/// their defaults (so ids from before a setting existed stay what they were). Every such setting
/// belongs here: a resume then refuses the records of cells measured the other way, and compare
/// never matches them. Settings that change nothing for this cell's precision are left out, so
/// flipping FP8 fast accumulation does not re-measure int8 cells.
pub fn execution_identity(
    device: &crate::config::DeviceSection,
    precision: Precision,
    encoder: bool,
) -> Value {
    use crate::config::EightBit;
    let mut settings = serde_json::Map::new();
    // Eager launches against one CUDA graph per pass: different numbers on a GPU.
    if !device.cuda_graphs {
        settings.insert("cuda_graphs".into(), json!(false));
    }
    // W8A8: the FFN's activation quantized in the GELU kernel, or in a pass of its own.
    if precision.eight_bit().is_some() && !device.fuse_quantization {
        settings.insert("fuse_quantization".into(), json!(false));
    }
    // FP8: cuBLASLt's fast accumulation (other numerics, other speed).
    if precision.eight_bit() == Some(EightBit::Fp8E4M3) && device.fp8_fast_accumulation {
        settings.insert("fp8_fast_accumulation".into(), json!(true));
    }
    // CUTLASS GEMMs with fused epilogues instead of cuBLASLt's: the 8-bit and 16-bit cells
    // (fp32 and the GGML formats have no such GEMM).
    let fused_gemms =
        precision.eight_bit().is_some() || matches!(precision, Precision::Fp16 | Precision::Bf16);
    // Encoders only: decoders run cuBLASLt whatever the key says.
    if encoder && fused_gemms && !device.gemm_library.is_cublaslt() {
        settings.insert("gemm_library".into(), json!(device.gemm_library.name()));
    }
    // W8A8: FFN-out's input with static calibrated steps written by FFN-in's epilogue.
    if precision.eight_bit().is_some() && !device.ffn_activation_scales.is_dynamic() {
        settings.insert(
            "ffn_activation_scales".into(),
            json!(device.ffn_activation_scales.name()),
        );
    }
    // W8A8 encoders: attention-out's input as codes with static steps written by the attention.
    if encoder
        && precision.eight_bit().is_some()
        && !device.attention_activation_scales.is_dynamic()
    {
        settings.insert(
            "attention_activation_scales".into(),
            json!(device.attention_activation_scales.name()),
        );
    }
    // The CUTLASS FFN-in epilogues' GELU with fewer instructions (another kernel, other last bits).
    if fused_gemms && !device.gelu_epilogue.is_standard() {
        settings.insert("gelu_epilogue".into(), json!(device.gelu_epilogue.name()));
    }
    // The encoders' one-kernel attention skipping the padding's keys (f16/bf16 and 8-bit cells).
    if encoder && fused_gemms && !device.attention_padding.is_compute() {
        settings.insert(
            "attention_padding".into(),
            json!(device.attention_padding.name()),
        );
    }
    // The CUTLASS kernels picked per shape by timing them (encoders: cells set it before loading).
    if encoder && fused_gemms && !device.gemm_tactics.is_rule() {
        settings.insert("gemm_tactics".into(), json!(device.gemm_tactics.name()));
    }
    // The f16/bf16 layer norms as the pair kernels (the same values; another kernel, other times).
    if encoder && fused_gemms && device.pair_norms() {
        settings.insert("pair_norms".into(), json!(true));
    }
    // The encoders' embeddings as one runner kernel (decoders have none of that kind).
    if encoder && device.fused_embeddings() {
        settings.insert("fused_embeddings".into(), json!(true));
    }
    Value::Object(settings)
}

/// A cell's id: the first 12 hex digits of the SHA-256 of its fully resolved settings (model name,
/// architecture, weights' identity, precision, shapes, scope, protocol, dataset and tokenizer
/// contents, and the execution settings that change what it measures: [`execution_identity`]).
/// Independent of the cell's position, of other cells and of the device, so re-runs, resumes and
/// comparisons across machines match cells by what they are.
pub(super) fn cell_id(cell: &Cell, spec: &ModelSpec, ctx: &IdContext) -> anyhow::Result<String> {
    let mut identity = json!({
        "model": cell.model,
        "weights": ctx.weights[&cell.model],
        "precision": cell.precision,
        "batch_size": cell.batch_size,
        "seq_len": cell.seq_len,
        "scope": cell.scope,
        "protocol": ctx.protocol,
        "dataset": ctx.dataset,
    });
    match (spec.encoder(), spec.decoder()) {
        (Some(preset), _) => identity["preset"] = json!(preset),
        (None, Some(d)) => {
            // The decoder's architecture and config.json text (the crate reads every key of it);
            // GGUF files are named by their contents through `weights`.
            identity["decoder"] = json!({
                "architecture": d.architecture,
                "config_sha256": d.config_json.as_deref().map(|c| hex(&Sha256::digest(c.as_bytes()))[..16].to_string()),
            });
            // Only the runner's own decoder adds a key, so crate-run ids stay what they were.
            if d.implementation == crate::config::Implementation::Own {
                identity["decoder"]["implementation"] = json!("own");
            }
            // The prefill attention the cell runs (`auto` resolved): only flash adds a key, so
            // the ids of plain cells, whether written plain or resolved so, stay what they were.
            if !cell.prefill_attention.is_plain() {
                identity["decoder"]["prefill_attention"] = json!(cell.prefill_attention.name());
            }
            if !d.decode_kernels.is_plain() {
                identity["decoder"]["decode_kernels"] = json!(d.decode_kernels.name());
            }
            identity["prompt_len"] = json!(cell.prompt_len);
            identity["new_tokens"] = json!(cell.new_tokens);
            // Cold isolated units measure another thing than the warm ones every id before the
            // key named: only cold adds a key, whatever the default.
            if cell.scope == crate::config::Scope::Layers
                && cell.layer_method.isolated()
                && ctx.layer_isolation.is_cold()
            {
                identity["layer_isolation"] = json!(ctx.layer_isolation.name());
            }
        }
        (None, None) => unreachable!("a model is an encoder or a decoder"),
    }
    // Only probe heads add a key, so checkpoint-head ids are what they were before probes existed.
    if let Some(probe) = &spec.probe {
        identity["probe_head"] = json!({ "settings": probe, "seed": spec.seed });
    }
    // Likewise the per-layer axes: only a value other than the default adds a key.
    if !cell.quantize.is_all() {
        identity["quantize"] = json!(cell.quantize);
    }
    if !cell.layer_method.is_isolated() {
        identity["layer_method"] = json!(cell.layer_method);
    }
    let execution = execution_identity(&ctx.device, cell.precision, spec.encoder().is_some());
    if execution.as_object().is_some_and(|m| !m.is_empty()) {
        identity["execution"] = execution;
    }
    // serde_json's maps are sorted by key, so this text is canonical.
    let text = serde_json::to_string(&identity)?;
    Ok(hex(&Sha256::digest(text.as_bytes()))[..12].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend, DeviceSection, GpuSet};

    /// Every device setting either changes what a cell measures (then it is in the id of the
    /// cells it affects) or only says where the cell runs (a cell is the same measurement on any
    /// device; `--resume` checks the device). The literal lists every field: a new one does not
    /// compile here until it is put on one side.
    #[test]
    fn every_device_setting_is_in_the_id_or_only_says_where_the_cell_runs() {
        let all_changed = DeviceSection {
            // Where: not in the id.
            backend: Backend::Cpu,
            gpu: 3,
            gpus: Some(GpuSet::List(vec![0, 1])),
            cpu_workers: 2,
            // What: in the id.
            cuda_graphs: false,
            fuse_quantization: false,
            fp8_fast_accumulation: true,
            gemm_library: crate::config::GemmLibrary::Cutlass,
            fused_embeddings: Some(true),
            ffn_activation_scales: crate::config::FfnActivationScales::Static,
            gelu_epilogue: crate::config::GeluEpilogue::Lean,
            attention_padding: crate::config::AttentionPadding::Skip,
            attention_activation_scales: crate::config::FfnActivationScales::Static,
            gemm_tactics: crate::config::GemmTactics::Timed,
            pair_norms: Some(true),
        };
        let keys = |p: &str| -> Vec<String> {
            let precision = Precision::parse(p).unwrap();
            let v = execution_identity(&all_changed, precision, true);
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys("fp8-fp16"),
            [
                "attention_activation_scales",
                "attention_padding",
                "cuda_graphs",
                "ffn_activation_scales",
                "fp8_fast_accumulation",
                "fuse_quantization",
                "fused_embeddings",
                "gelu_epilogue",
                "gemm_library",
                "gemm_tactics",
                "pair_norms"
            ]
        );
        assert_eq!(
            keys("int8-fp16"),
            [
                "attention_activation_scales",
                "attention_padding",
                "cuda_graphs",
                "ffn_activation_scales",
                "fuse_quantization",
                "fused_embeddings",
                "gelu_epilogue",
                "gemm_library",
                "gemm_tactics",
                "pair_norms"
            ]
        );
        assert_eq!(keys("q8_0-fp16"), ["cuda_graphs", "fused_embeddings"]);
        assert_eq!(
            keys("fp16"),
            [
                "attention_padding",
                "cuda_graphs",
                "fused_embeddings",
                "gelu_epilogue",
                "gemm_library",
                "gemm_tactics",
                "pair_norms"
            ]
        );
        assert_eq!(keys("fp32"), ["cuda_graphs", "fused_embeddings"]);
        let defaults = execution_identity(&DeviceSection::default(), Precision::Fp32, true);
        assert!(defaults.as_object().unwrap().is_empty());
        // A decoder's cells never carry the embeddings key.
        let decoder = execution_identity(&all_changed, Precision::Fp32, false);
        assert!(decoder.get("fused_embeddings").is_none(), "{decoder}");
        assert!(decoder.get("attention_padding").is_none(), "{decoder}");
        assert!(decoder.get("gemm_tactics").is_none(), "{decoder}");
        let decoder_fp16 = execution_identity(&all_changed, Precision::Fp16, false);
        assert!(decoder_fp16.get("gemm_library").is_none(), "{decoder_fp16}");
        assert!(
            decoder.get("attention_activation_scales").is_none(),
            "{decoder}"
        );
    }
}
