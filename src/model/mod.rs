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

pub mod encoder;
pub mod parts;
pub mod quant;
pub mod weights;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

pub use weights::hex;

use crate::config::{
    FloatPrecision, HeadKind, LoadedExperiment, ModelSection, Precision, ProbeSection, QuantFormat,
};
pub use encoder::{
    CapturedUnit, Component, Encoder, Head, Layer, LinearSite, Numerics, Pooling, Unit,
};

/// The presets are named by experiment files and checked with them (config/presets.rs); the model
/// code names them `model::preset` / `model::Preset`.
pub use crate::config::presets as preset;
pub use crate::config::Preset;

/// The float dtype of a precision (of everything but quantized linear weights).
pub fn dtype_for(precision: Precision) -> DType {
    match precision.float() {
        FloatPrecision::Fp32 => DType::F32,
        FloatPrecision::Fp16 => DType::F16,
        FloatPrecision::Bf16 => DType::BF16,
    }
}

pub fn ggml_for(format: QuantFormat) -> GgmlDType {
    match format {
        QuantFormat::Q8_0 => GgmlDType::Q8_0,
        QuantFormat::Q4_0 => GgmlDType::Q4_0,
        QuantFormat::Q4K => GgmlDType::Q4K,
        QuantFormat::Q6K => GgmlDType::Q6K,
    }
}

pub fn numerics_for(precision: Precision) -> Numerics {
    Numerics {
        float: dtype_for(precision),
        quant: precision.quant().map(ggml_for),
        eight_bit: precision.eight_bit(),
    }
}

/// A declared model, resolved against the experiment file.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub preset: Preset,
    pub weights: WeightsSource,
    /// Set when the model's head is a linear probe trained by the runner.
    pub probe: Option<ProbeSection>,
    /// The experiment's seed (random weights, the probe's split).
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WeightsSource {
    Random { seed: u64 },
    HuggingFaceDir(PathBuf),
}

impl ModelSpec {
    pub fn resolve(name: &str, section: &ModelSection, exp: &LoadedExperiment) -> Result<Self> {
        let preset = Preset::lookup(section.architecture, &section.preset)
            .with_context(|| format!("models.{name}: unknown preset {:?}", section.preset))?;
        let weights = if section.weights == "random" {
            WeightsSource::Random {
                seed: exp.config.experiment.seed,
            }
        } else {
            WeightsSource::HuggingFaceDir(exp.resolve(Path::new(&section.weights)))
        };
        Ok(Self {
            name: name.to_string(),
            preset,
            weights,
            probe: (section.head == HeadKind::Probe).then(|| section.probe.clone()),
            seed: exp.config.experiment.seed,
        })
    }

    /// What the weights are, for the cell id: the seed for random weights; for a folder, the
    /// SHA-256 of config.json and of the whole model.safetensors. The values count, not only the
    /// shapes: a resumed run must not take a fine-tuned checkpoint's cells for the base model's.
    /// (About a second for DistilBERT-base's 265 MB, once per plan.)
    pub fn weights_identity(&self) -> Result<String> {
        match &self.weights {
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
        let WeightsSource::HuggingFaceDir(dir) = &self.weights else {
            return Ok(());
        };
        let with_head = self.probe.is_none();
        let st = dir.join("model.safetensors");
        let index = weights::safetensors_index(&st)?;
        weights::check_float_tensors(&st, &index)?;
        encoder::check_hf_config(dir, &self.preset, with_head)?;
        encoder::check_checkpoint_tensors(&st, &index, &self.preset, with_head)
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

/// The name a record and a report give a float dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "fp32",
        DType::F16 => "fp16",
        DType::BF16 => "bf16",
        DType::F64 => "fp64",
        _ => "other",
    }
}

impl ModelStore {
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
        let vb = match &spec.weights {
            WeightsSource::Random { seed } => {
                if !self.random.contains_key(&spec.name) {
                    let tensors = encoder::random_tensors(&spec.preset, *seed)?;
                    self.random.insert(spec.name.clone(), tensors);
                }
                VarBuilder::from_tensors(self.random[&spec.name].clone(), dtype, device)
            }
            WeightsSource::HuggingFaceDir(dir) => {
                encoder::check_hf_config(dir, &spec.preset, spec.probe.is_none())?;
                let file = dir.join("model.safetensors");
                // SAFETY: the file is memory-mapped read-only; the runner does not modify it while
                // the model is loaded (the usual caveat for mmapped files).
                unsafe { VarBuilder::from_mmaped_safetensors(&[&file], dtype, device) }
                    .with_context(|| format!("loading {}", file.display()))?
            }
        };
        let selected = |site: LinearSite| sites.is_none_or(|s| s.contains(&site));
        Encoder::load_selected(vb, &spec.preset, numerics_for(precision), head, &selected)
            .with_context(|| format!("building model {:?} in {}", spec.name, precision.name()))
    }
}

/// Checks that the device really runs this dtype (a matmul, a softmax, a cast), so an unsupported
/// precision becomes a skipped cell with the backend's own reason instead of a crash mid-window.
/// Why a cell's precision cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// The model's shapes do not fit the format (the same on every device): the cell is skipped.
    Shape(String),
    /// This device or build cannot run it: the cell fails, since another machine could.
    Device(String),
}

/// Whether this GPU runs `precision` (an `fp8-*`) through cuBLASLt's FP8 GEMMs: E4M3 tensor cores
/// (compute capability 8.9 or later), an f16/bf16 output, every linear width a multiple of 16.
fn fp8_on_tensor_cores(
    precision: Precision,
    preset: &Preset,
    device: &Device,
) -> std::result::Result<(), String> {
    let name = precision.name();
    if !matches!(
        precision.float(),
        crate::config::FloatPrecision::Fp16 | crate::config::FloatPrecision::Bf16
    ) {
        return Err(format!(
            "{name}: cuBLASLt's FP8 GEMMs write f16 or bf16; use fp8-fp16 or fp8-bf16 on the GPU (fp8-fp32 runs as the CPU numerics reference with device.backend = \"cpu\")"
        ));
    }
    for (what, width) in [("dim", preset.dim), ("hidden_dim", preset.hidden_dim)] {
        if width % crate::ops::eight_bit::fp8_gemm::FP8_WIDTH_MULTIPLE != 0 {
            return Err(format!(
                "{name} needs linear layers whose input width is a multiple of {}; this model's {what} is {width}",
                crate::ops::eight_bit::fp8_gemm::FP8_WIDTH_MULTIPLE
            ));
        }
    }
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        let (major, minor) = cuda
            .cuda_stream()
            .context()
            .compute_capability()
            .map_err(|e| format!("{name}: reading the GPU's compute capability failed: {e:?}"))?;
        if (major, minor) < (8, 9) {
            return Err(format!(
                "{name} needs FP8 tensor cores (compute capability 8.9 or later: Ada, Hopper); this GPU is {major}.{minor}: run int8-* here"
            ));
        }
    }
    let _ = device;
    Ok(())
}

pub fn probe_precision(
    precision: Precision,
    preset: &Preset,
    device: &Device,
) -> std::result::Result<(), Unsupported> {
    if precision.eight_bit() == Some(crate::config::EightBit::Fp8E4M3) && device.is_cuda() {
        // Never run the f32 reference on a GPU and report its time as if it were fp8.
        fp8_on_tensor_cores(precision, preset, device).map_err(Unsupported::Device)?;
    }
    if let Some(format) = precision.quant() {
        // Every linear layer's input is `dim` or `hidden_dim` wide; GGML blocks run along it.
        let block = format.block_size();
        for (what, width) in [("dim", preset.dim), ("hidden_dim", preset.hidden_dim)] {
            if width % block != 0 {
                return Err(Unsupported::Shape(format!(
                    "{} needs linear layers whose input width is a multiple of {block}; this model's {what} is {width}",
                    precision.name()
                )));
            }
        }
        let run = || -> candle_core::Result<()> {
            let w = Tensor::ones((8, block), DType::F32, device)?;
            let q = QMatMul::from_qtensor(QTensor::quantize(&w, ggml_for(format))?)?;
            let x = Tensor::ones((4, block), dtype_for(precision), device)?;
            q.forward(&x)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            Ok(())
        };
        run().map_err(|e| {
            Unsupported::Device(format!(
                "{} is not supported on this device: {e}",
                precision.name()
            ))
        })?;
    }
    let dtype = dtype_for(precision);
    let run = || -> candle_core::Result<()> {
        let a = Tensor::ones((4, 8), dtype, device)?;
        let b = Tensor::ones((8, 4), dtype, device)?;
        let c = a.matmul(&b)?;
        let s = candle_nn::ops::softmax_last_dim(&c.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
        s.gelu_erf()?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(())
    };
    run().map_err(|e| {
        Unsupported::Device(format!(
            "{} is not supported on this device: {e}",
            precision.name()
        ))
    })
}
