//! Models with per-layer access, their weights, and the precisions they run in.
//!
//! Inside, imports run one way: `quant` (numerics) <- `parts` (layers shared by the families,
//! which also use `ops`, the kernels one floor below) <- `encoder` <- this file. `weights` says
//! where tensors come from.
//!
//! - `weights/`: safetensors headers and identity, seeded random values
//! - `quant/`: quantization numerics, no kernels (W8A8's per-row rounding)
//! - `parts/`: layers the families share (the W8A8 linear)
//! - `encoder/`: DistilBERT and BERT classifiers, with per-layer access

pub mod decoder;
pub mod encoder;
pub mod parts;
mod precision;
pub mod quant;
pub mod weights;
pub mod workload;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

pub use precision::{
    dtype_for, dtype_name, float_dtype, ggml_for, numerics_for, probe_cell, probe_precision,
    Unsupported,
};
pub use weights::hex;

use crate::config::{toml_key, HeadKind, LoadedExperiment, ModelSection, Precision, ProbeSection};
use decoder::DecoderSpec;
pub use encoder::{
    CapturedUnit, Component, Encoder, Head, Layer, LinearSite, Numerics, Pooling, Unit,
};
use workload::{Generate, WorkloadKind};

/// The presets are named by experiment files and checked with them (config/presets.rs); the model
/// code names them `model::preset` / `model::Preset`.
pub use crate::config::presets as preset;
pub use crate::config::Preset;

/// A declared model, resolved against the experiment file.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub family: Family,
    /// Set when the model's head is a linear probe trained by the runner.
    pub probe: Option<ProbeSection>,
    /// The experiment's seed (random weights, the probe's split).
    pub seed: u64,
}

/// The two model families: the runner's own encoders (a preset, random or folder weights), and
/// the decoders of candle-transformers' zoo.
#[derive(Debug, Clone)]
pub enum Family {
    Encoder {
        preset: Preset,
        weights: WeightsSource,
    },
    Decoder(Box<DecoderSpec>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WeightsSource {
    Random { seed: u64 },
    HuggingFaceDir(PathBuf),
}

impl ModelSpec {
    pub fn resolve(name: &str, section: &ModelSection, exp: &LoadedExperiment) -> Result<Self> {
        let seed = exp.config.experiment.seed;
        let weights =
            (section.weights != "random").then(|| exp.resolve(Path::new(&section.weights)));
        let family = match section.encoder() {
            Some(_) => Family::Encoder {
                preset: section.encoder_preset().with_context(|| {
                    format!(
                        "{}: unknown preset {:?}",
                        toml_key(&["models", name]),
                        section.preset
                    )
                })?,
                weights: match weights {
                    None => WeightsSource::Random { seed },
                    Some(dir) => WeightsSource::HuggingFaceDir(dir),
                },
            },
            None => {
                let mut spec = DecoderSpec::resolve(
                    &section.architecture,
                    section.preset.as_deref(),
                    weights.as_deref(),
                    seed,
                    section.implementation,
                )
                .with_context(|| toml_key(&["models", name]))?;
                spec.decode_kernels = section.decode_kernels;
                spec.prefill_attention = section.prefill_attention;
                if let Some(layers) = section.layers {
                    spec.cut_layers(layers)
                        .with_context(|| toml_key(&["models", name, "layers"]))?;
                }
                Family::Decoder(Box::new(spec))
            }
        };
        Ok(Self {
            name: name.to_string(),
            family,
            probe: (section.head == HeadKind::Probe).then(|| section.probe.clone()),
            seed,
        })
    }

    /// What a cell of this model runs.
    pub fn workload(&self) -> WorkloadKind {
        match self.family {
            Family::Encoder { .. } => WorkloadKind::Classify,
            Family::Decoder(_) => WorkloadKind::Generate,
        }
    }

    /// The encoder's preset; `None` for a decoder.
    pub fn encoder(&self) -> Option<&Preset> {
        match &self.family {
            Family::Encoder { preset, .. } => Some(preset),
            Family::Decoder(_) => None,
        }
    }

    pub fn decoder(&self) -> Option<&DecoderSpec> {
        match &self.family {
            Family::Decoder(d) => Some(d),
            Family::Encoder { .. } => None,
        }
    }

    /// Tokens of the model's vocabulary (its embedding rows).
    pub fn vocab_size(&self) -> usize {
        match &self.family {
            Family::Encoder { preset, .. } => preset.vocab_size,
            Family::Decoder(d) => d.shapes.vocab,
        }
    }

    /// The longest input the model takes: an encoder's position embeddings, a decoder's context.
    pub fn max_positions(&self) -> usize {
        match &self.family {
            Family::Encoder { preset, .. } => preset.max_position_embeddings,
            Family::Decoder(d) => d.shapes.max_positions,
        }
    }

    /// What the weights are, for the cell id: the seed for random weights; for a folder, the
    /// SHA-256 of config.json and of the whole model.safetensors. The values count, not only the
    /// shapes: a resumed run must not take a fine-tuned checkpoint's cells for the base model's.
    /// (About a second for DistilBERT-base's 265 MB, once per plan.)
    pub fn weights_identity(&self) -> Result<String> {
        let weights = match &self.family {
            Family::Encoder { weights, .. } => weights,
            Family::Decoder(d) => return d.identity(),
        };
        match weights {
            WeightsSource::Random { seed } => Ok(format!("random(seed={seed})")),
            WeightsSource::HuggingFaceDir(dir) => {
                let mut h = Sha256::new();
                let config = dir.join("config.json");
                h.update(crate::files::read(
                    &config,
                    crate::files::limit::MODEL_CONFIG,
                    "config.json",
                )?);
                let st = dir.join("model.safetensors");
                // A readable header first, so a wrong file is named as such; the file is
                // hashed as a regular file only (weights may be large; a FIFO never ends).
                weights::safetensors_header(&st)?;
                let mut f = crate::files::open_regular(&st, "weights file")?
                    .with_context(|| format!("{}: no such file", st.display()))?;
                std::io::copy(&mut f, &mut h)
                    .with_context(|| format!("reading {}", st.display()))?;
                Ok(format!("hf-dir(sha256:{})", &hex(&h.finalize())[..16]))
            }
        }
    }

    /// Checks a weights folder before anything is measured, as loading it would: config.json
    /// describes the declared preset with nothing the implementation ignores; the safetensors
    /// header is sound, every tensor floating point, and every tensor the model loads present
    /// with the preset's shape. Random weights need no check.
    pub fn check_weights(&self) -> Result<()> {
        let (preset, dir) = match &self.family {
            Family::Encoder {
                preset,
                weights: WeightsSource::HuggingFaceDir(dir),
            } => (preset, dir),
            Family::Encoder { .. } => return Ok(()),
            // A decoder's shapes and tensors are its crate model's: its files' headers and
            // dtypes are checked here, the tensors by the crate's loader.
            Family::Decoder(d) => return d.check_weights(),
        };
        let with_head = self.probe.is_none();
        let st = dir.join("model.safetensors");
        let index = weights::safetensors_index(&st)?;
        weights::check_float_tensors(&st, &index)?;
        encoder::check_hf_config(dir, preset, with_head)?;
        encoder::check_checkpoint_tensors(&st, &index, preset, with_head)
    }
}

/// Builds models, keeping each model's host-side random weights so that several precisions and
/// batch sizes of one model generate them once.
#[derive(Default)]
pub struct ModelStore {
    random: HashMap<String, HashMap<String, Tensor>>,
    /// fp32 reference logits per (model, seq_len), for fidelity: computed once per run.
    pub references: HashMap<(String, usize), Vec<Vec<f32>>>,
}

/// A classifier head trained outside the model (the runner's linear probe), as the `weight` and
/// `bias` tensors the model's head is built from: the model takes tensors, so it needs nothing of
/// the code that trains them.
pub trait HeadTensors {
    fn tensors(&self) -> Result<HashMap<String, Tensor>>;
}

impl ModelStore {
    /// A decoder for a generate cell.
    pub fn load_decoder(
        &mut self,
        spec: &ModelSpec,
        precision: Precision,
        device: &Device,
    ) -> Result<Box<dyn Generate>> {
        let decoder = spec
            .decoder()
            .with_context(|| format!("model {:?} is an encoder: it classifies", spec.name))?;
        decoder
            .load(precision, device)
            .with_context(|| format!("building model {:?} in {}", spec.name, precision.name()))
    }

    /// The model with its checkpoint head, or for probe models the feature extractor (no
    /// classifier); see [`Self::load_with_probe`].
    pub fn load(
        &mut self,
        spec: &ModelSpec,
        precision: Precision,
        device: &Device,
    ) -> Result<Encoder> {
        let head = if spec.probe.is_some() {
            Head::Probe(None)
        } else {
            Head::Checkpoint
        };
        self.build(spec, precision, device, head)
    }

    /// A probe model with its trained head.
    pub fn load_with_probe(
        &mut self,
        spec: &ModelSpec,
        precision: Precision,
        device: &Device,
        probe: &dyn HeadTensors,
    ) -> Result<Encoder> {
        let head = VarBuilder::from_tensors(probe.tensors()?, DType::F32, device);
        self.build(spec, precision, device, Head::Probe(Some(head)))
    }

    /// The model of a cell whose `quantize` selection names the linear sites to quantize
    /// (`None`: all of them), with its probe head where it has one.
    pub fn load_selected(
        &mut self,
        spec: &ModelSpec,
        precision: Precision,
        device: &Device,
        probe: Option<&dyn HeadTensors>,
        sites: Option<&[LinearSite]>,
    ) -> Result<Encoder> {
        let head = match probe {
            Some(p) => Head::Probe(Some(VarBuilder::from_tensors(
                p.tensors()?,
                DType::F32,
                device,
            ))),
            None if spec.probe.is_some() => Head::Probe(None),
            None => Head::Checkpoint,
        };
        self.build_selected(spec, precision, device, head, sites)
    }

    fn build(
        &mut self,
        spec: &ModelSpec,
        precision: Precision,
        device: &Device,
        head: Head,
    ) -> Result<Encoder> {
        self.build_selected(spec, precision, device, head, None)
    }

    fn build_selected(
        &mut self,
        spec: &ModelSpec,
        precision: Precision,
        device: &Device,
        head: Head,
        sites: Option<&[LinearSite]>,
    ) -> Result<Encoder> {
        let dtype = dtype_for(precision);
        let Family::Encoder { preset, weights } = &spec.family else {
            anyhow::bail!(
                "model {:?} is a decoder: it generates, it does not classify",
                spec.name
            );
        };
        let vb = match weights {
            WeightsSource::Random { seed } => {
                if !self.random.contains_key(&spec.name) {
                    let tensors = encoder::random_tensors(preset, *seed)?;
                    self.random.insert(spec.name.clone(), tensors);
                }
                VarBuilder::from_tensors(self.random[&spec.name].clone(), dtype, device)
            }
            WeightsSource::HuggingFaceDir(dir) => {
                encoder::check_hf_config(dir, preset, spec.probe.is_none())?;
                let file = dir.join("model.safetensors");
                // SAFETY: the file is memory-mapped read-only; the runner does not modify it while
                // the model is loaded (the usual caveat for mmapped files).
                unsafe { VarBuilder::from_mmaped_safetensors(&[&file], dtype, device) }
                    .with_context(|| format!("loading {}", file.display()))?
            }
        };
        let selected = |site: LinearSite| sites.is_none_or(|s| s.contains(&site));
        Encoder::load_selected(vb, preset, numerics_for(precision), head, &selected)
            .with_context(|| format!("building model {:?} in {}", spec.name, precision.name()))
    }
}
