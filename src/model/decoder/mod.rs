//! Decoder LLMs, as candle-transformers runs them: every decoder of the crate whose forward fits
//! one of its calling conventions (`zoo.rs`), with weights that are seeded random values in a
//! preset's real shapes, a local Hugging Face folder (sharded safetensors too), or a GGUF file
//! (`gguf.rs`, through the crate's quantized models). The generate workload steps them through
//! [`Generate`] (`crate_run.rs`).
//!
//! - `zoo.rs`: one table entry per architecture, one adapter per calling convention
//! - `presets.rs`: config.json of published checkpoints (and a tiny one per entry)
//! - `shapes.rs`: shapes read and bounded, parameter and KV-cache sizes, memory estimates
//! - `gguf.rs`: GGUF files: shapes, formats, tokenizer from metadata, the quantized models
//! - `crate_run.rs`: the adapters, and reset / mark / rewind by cloning the crate's model
//! - `folder.rs`: a checkpoint folder's safetensors files (shards too), headers checked

pub mod crate_run;
mod folder;
pub mod gguf;
pub mod llama;
mod own;
pub mod presets;
pub mod quantize_load;
pub mod shapes;
pub mod zoo;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use self::crate_run::{CrateDecoder, Description};
use self::gguf::GgufModel;
use self::shapes::Shapes;
use crate::config::{DecodeKernels, FloatPrecision, Implementation, Precision, PrefillAttention};
use crate::model::workload::Generate;
use crate::model::{dtype_for, dtype_name, hex};

/// Where a decoder's weights come from.
#[derive(Debug, Clone)]
pub enum DecoderSource {
    /// Seeded random values in the preset's shapes.
    Random {
        seed: u64,
    },
    /// A Hugging Face folder: config.json and these safetensors files (one, or the shards).
    Folder {
        dir: PathBuf,
        files: Vec<PathBuf>,
    },
    Gguf(Box<GgufModel>),
}

/// A declared decoder, resolved: what it is, its shapes, and where its weights are.
#[derive(Debug, Clone)]
pub struct DecoderSpec {
    /// The zoo entry (the experiment file's `architecture`).
    pub architecture: &'static str,
    pub preset: Option<String>,
    /// config.json's text (random weights and folders; `None` for GGUF files).
    pub config_json: Option<String>,
    pub shapes: Shapes,
    pub source: DecoderSource,
    /// candle-transformers' model, or the runner's own Llama-family decoder (`llama/`).
    pub implementation: Implementation,
    /// The own decoder's decode-step kernels: candle's (plain) or the runner's fused ones.
    pub decode_kernels: DecodeKernels,
    /// The own decoder's prefill attention: candle's plain ops or the runner's flash kernel.
    pub prefill_attention: PrefillAttention,
}

/// "did you mean" over the architectures the runner knows, encoders and decoders.
fn unknown_architecture(name: &str) -> anyhow::Error {
    let mut known: Vec<&str> = crate::config::Architecture::ENCODERS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    known.extend(zoo::names());
    let hint = crate::config::did_you_mean(name, known.iter().copied());
    anyhow::anyhow!(
        "unknown architecture {name:?}{hint}; encoders: distilbert, bert; decoders (candle-transformers): {}",
        zoo::names().join(", ")
    )
}

impl DecoderSpec {
    /// `weights` is "random" or a resolved path (a folder, or a .gguf file).
    pub fn resolve(
        architecture: &str,
        preset: Option<&str>,
        weights: Option<&Path>,
        seed: u64,
        implementation: Implementation,
    ) -> Result<Self> {
        let mut spec = Self::resolve_crate(architecture, preset, weights, seed)?;
        if implementation == Implementation::Own {
            let own = &llama::config::OWN_ARCHITECTURES;
            if !own.contains(&spec.architecture) {
                bail!(
                    "implementation = \"own\": architecture {:?} has no runner's own implementation (those with one: {}); leave the key out to run candle-transformers' model",
                    spec.architecture,
                    own.join(", ")
                );
            }
            if let DecoderSource::Gguf(g) = &spec.source {
                if g.rope_frequencies {
                    bail!(
                        "implementation = \"own\" with {}: the file stores llama 3 rope frequency factors, which the runner's own decoder reads from a config.json's rope_scaling only: leave the key out to run candle-transformers' quantized_llama",
                        g.path.display()
                    );
                }
            }
            llama::config::FamilyConfig::from_json(spec.architecture, spec.own_config_json())?;
            spec.implementation = Implementation::Own;
        }
        Ok(spec)
    }

    fn resolve_crate(
        architecture: &str,
        preset: Option<&str>,
        weights: Option<&Path>,
        seed: u64,
    ) -> Result<Self> {
        let entry = zoo::lookup(architecture).ok_or_else(|| unknown_architecture(architecture))?;
        let preset_config = match preset {
            Some(name) => Some(presets::lookup(entry.name, name).with_context(|| {
                format!(
                    "unknown preset {name:?} for {}; known: {}",
                    entry.name,
                    presets::names(entry.name).join(", ")
                )
            })?),
            None => None,
        };
        let Some(path) = weights else {
            let p = preset_config.context("random weights need a preset (the shapes to build)")?;
            let shapes = Shapes::from_config_json(&p.config_json, &format!("preset {}", p.name))?;
            return Ok(Self {
                architecture: entry.name,
                preset: Some(p.name),
                config_json: Some(p.config_json),
                shapes,
                source: DecoderSource::Random { seed },
                implementation: Implementation::Crate,
                decode_kernels: DecodeKernels::Plain,
                prefill_attention: PrefillAttention::Plain,
            });
        };
        let spec = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            let model = GgufModel::open(path, entry.name)?;
            Self {
                architecture: entry.name,
                preset: preset.map(str::to_string),
                config_json: None,
                shapes: model.shapes.clone(),
                source: DecoderSource::Gguf(Box::new(model)),
                implementation: Implementation::Crate,
                decode_kernels: DecodeKernels::Plain,
                prefill_attention: PrefillAttention::Plain,
            }
        } else {
            let config = path.join("config.json");
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let shapes = Shapes::from_config_json(&text, &config.display().to_string())?;
            let model_type: Option<String> = serde_json::from_str::<serde_json::Value>(&text)?
                .get("model_type")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            if let Some(mt) = &model_type {
                if !entry.model_types.contains(&mt.as_str()) {
                    let hint = zoo::by_model_type(mt)
                        .map(|e| format!(": set architecture = {:?}", e.name))
                        .unwrap_or_default();
                    bail!(
                        "{}: model_type {mt:?} is not a {} config{hint}",
                        config.display(),
                        entry.name
                    );
                }
            }
            (entry.check_config)(&text).with_context(|| format!("{}", config.display()))?;
            Self {
                architecture: entry.name,
                preset: preset.map(str::to_string),
                config_json: Some(text),
                shapes,
                source: DecoderSource::Folder {
                    files: folder::safetensors_files(path)?,
                    dir: path.to_path_buf(),
                },
                implementation: Implementation::Crate,
                decode_kernels: DecodeKernels::Plain,
                prefill_attention: PrefillAttention::Plain,
            }
        };
        if let Some(p) = preset_config {
            let declared = Shapes::from_config_json(&p.config_json, &p.name)?;
            let (a, b) = (&declared, &spec.shapes);
            if (a.hidden, a.layers, a.heads, a.kv_heads, a.vocab)
                != (b.hidden, b.layers, b.heads, b.kv_heads, b.vocab)
            {
                bail!(
                    "{}: its shapes (hidden {}, {} layers, {} heads, {} KV heads, vocabulary {}) are not preset {}'s (hidden {}, {} layers, {} heads, {} KV heads, vocabulary {}): leave the preset out, or name the checkpoint's",
                    path.display(), b.hidden, b.layers, b.heads, b.kv_heads, b.vocab,
                    p.name, a.hidden, a.layers, a.heads, a.kv_heads, a.vocab
                );
            }
        }
        Ok(spec)
    }

    /// What the weights are, for cell ids: the seed for random ones; for files, SHA-256 of
    /// config.json and every weights file (values count, not only shapes).
    pub fn identity(&self) -> Result<String> {
        let mut h = Sha256::new();
        match &self.source {
            DecoderSource::Random { seed } => return Ok(format!("random(seed={seed})")),
            DecoderSource::Folder { dir, files } => {
                h.update(std::fs::read(dir.join("config.json"))?);
                for f in files {
                    let mut file = std::fs::File::open(f)
                        .with_context(|| format!("opening {}", f.display()))?;
                    std::io::copy(&mut file, &mut h)
                        .with_context(|| format!("reading {}", f.display()))?;
                }
            }
            DecoderSource::Gguf(g) => {
                let mut file = std::fs::File::open(&g.path)?;
                std::io::copy(&mut file, &mut h)
                    .with_context(|| format!("reading {}", g.path.display()))?;
            }
        }
        Ok(format!(
            "{}(sha256:{})",
            self.source_kind(),
            &hex(&h.finalize())[..16]
        ))
    }

    /// A folder's safetensors files: sound headers, every tensor floating point (the crate's
    /// loader casts them to the cell's dtype). GGUF files were checked when opened.
    pub fn check_weights(&self) -> Result<()> {
        if let DecoderSource::Folder { files, .. } = &self.source {
            for f in files {
                let index = crate::model::weights::safetensors_index(f)?;
                crate::model::weights::check_float_tensors(f, &index)?;
            }
        }
        Ok(())
    }

    pub fn source_kind(&self) -> &'static str {
        match self.source {
            DecoderSource::Random { .. } => "random",
            DecoderSource::Folder { .. } => "hf-dir",
            DecoderSource::Gguf(_) => "gguf",
        }
    }

    /// Whether the weights are a trained model's (perplexity means something).
    pub fn real_weights(&self) -> bool {
        !matches!(self.source, DecoderSource::Random { .. })
    }

    /// Why this decoder cannot run `precision`, if it cannot (the cell is skipped with it).
    pub fn refuses(&self, precision: Precision) -> Option<String> {
        if self.implementation == Implementation::Own {
            return self.own_refuses(precision);
        }
        let name = precision.name();
        match (&self.source, precision) {
            (DecoderSource::Gguf(g), Precision::Fp32) => {
                let _ = g;
                None
            }
            (DecoderSource::Gguf(_), Precision::Fp16 | Precision::Bf16) => Some(format!(
                "{name}: candle-transformers' quantized models compute in f32 (activations and KV cache); a GGUF file runs as stored (its format with f32 floats) or as fp32 (dequantized)"
            )),
            (DecoderSource::Gguf(g), Precision::Quantized(f, FloatPrecision::Fp32)) => match g.main_format {
                Some(stored) if stored == f => None,
                Some(stored) => Some(format!(
                    "{name}: {} stores its weights as {} ({}); the runner runs a GGUF file as stored, never re-quantized (two roundings): use precision {}",
                    g.path.display(), stored.name(), g.formats_text(), stored.name()
                )),
                None => Some(format!("{name}: {} holds no quantized weights ({}): use fp32", g.path.display(), g.formats_text())),
            },
            (DecoderSource::Gguf(_), _) => Some(format!(
                "{name}: candle-transformers' quantized models compute in f32; a GGUF file runs as stored (its format, f32 floats) or as fp32 (dequantized)"
            )),
            (_, Precision::Fp32 | Precision::Fp16 | Precision::Bf16) => None,
            (_, Precision::Quantized(format, float)) => {
                quantize_load::refuses(self, format, float)
            }
            (_, Precision::EightBit(..)) => Some(format!(
                "{name} quantizes the linear layers to 8 bits at load with its own W8A8 kernels, and candle-transformers' {} keeps its linear layers private: W8A8 decoders need the runner's own Llama-family decoder (\"The Llama family as deployed\"), which this build does not have; float precisions, GGML formats quantized at load (llama) and GGUF files as stored run here",
                self.architecture
            )),
        }
    }

    /// Why this decoder cannot run `precision` at `batch` prompts, if it cannot.
    pub fn refuses_batch(&self, precision: Precision, batch: usize) -> Option<String> {
        match &self.source {
            // The runner's own decoder runs every precision it accepts at any batch.
            _ if self.implementation == Implementation::Own => self.own_refuses(precision),
            DecoderSource::Gguf(g) if batch > 1 && g.output_quantized && precision != Precision::Fp32 => Some(format!(
                "batch {batch} in {}: candle-transformers {}'s {} hands its quantized output projection a non-contiguous (batch, hidden) slice when a prefill holds more than one prompt, which candle's QMatMul refuses (\"input tensor is not contiguous\"); this GGUF file's output projection is quantized, so it runs here at batch 1 (fp32, its weights dequantized, runs at any batch)",
                precision.name(),
                crate_version(),
                g.crate_model()
            )),
            DecoderSource::Random { .. } | DecoderSource::Folder { .. } => match precision {
                // The cell's own refusal first: it holds at every batch.
                Precision::Quantized(format, float) => quantize_load::refuses(self, format, float)
                    .or_else(|| quantize_load::refuses_batch(format, batch)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The dtype the weights and activations are held in for `precision` (f32 for GGUF files
    /// run by candle-transformers).
    pub fn dtype(&self, precision: Precision) -> DType {
        match self.source {
            DecoderSource::Gguf(_) if self.implementation == Implementation::Crate => DType::F32,
            _ => dtype_for(precision),
        }
    }

    /// Bytes of the weights in `precision`, as loaded.
    pub fn weight_bytes(&self, precision: Precision) -> u64 {
        match &self.source {
            _ if self.implementation == Implementation::Own && precision.quant().is_some() => {
                self.own_quantized_weight_bytes(precision)
            }
            // The own decoder holds a GGUF file's weights dequantized, in the float dtype.
            DecoderSource::Gguf(_) if self.implementation == Implementation::Own => {
                self.shapes.parameters() * self.dtype(precision).size_in_bytes() as u64
            }
            DecoderSource::Gguf(g) if precision == Precision::Fp32 => g.shapes.parameters() * 4,
            DecoderSource::Gguf(g) => g.weight_bytes,
            _ if precision.quant().is_some() => {
                quantize_load::weight_bytes(self, precision.quant().expect("a GGML format"))
            }
            _ => self.shapes.parameters() * self.dtype(precision).size_in_bytes() as u64,
        }
    }

    /// The largest memory a cell of this shape needs: weights, a KV cache for the whole context,
    /// and the largest transient of the prefill. An estimate, refused against the device's free
    /// memory before anything is measured.
    pub fn memory_bytes(
        &self,
        precision: Precision,
        batch: usize,
        prompt: usize,
        new_tokens: usize,
    ) -> u64 {
        let context = prompt + new_tokens;
        let dtype = self.dtype(precision).size_in_bytes();
        // Generation holds two caches at once: the marked one and the live one growing from it.
        self.weight_bytes(precision)
            + 2 * self.shapes.kv_cache_bytes(batch, context, dtype)
            + self.shapes.prefill_transient_bytes(batch, prompt, context)
    }

    /// The model's own tokenizer: the GGUF file's, or the folder's tokenizer.json; `None` for
    /// random weights (the dataset's tokenizer gives their prompts).
    pub fn tokenizer(&self) -> Result<Option<(Tokenizer, String)>> {
        match &self.source {
            DecoderSource::Random { .. } => Ok(None),
            DecoderSource::Gguf(g) => Ok(Some((
                g.tokenizer()?,
                format!(
                    "{}'s own (GGUF metadata, {})",
                    g.path.display(),
                    g.tokenizer_model.as_deref().unwrap_or("?")
                ),
            ))),
            DecoderSource::Folder { dir, .. } => {
                let path = dir.join("tokenizer.json");
                if !path.is_file() {
                    return Ok(None);
                }
                let t = Tokenizer::from_file(&path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Ok(Some((t, path.display().to_string())))
            }
        }
    }

    /// The decoder for a cell: built on `device` in `precision` (which [`Self::refuses`] must
    /// have accepted).
    pub fn load(&self, precision: Precision, device: &Device) -> Result<Box<dyn Generate>> {
        if let Some(why) = self.refuses(precision) {
            bail!("{why}");
        }
        if self.implementation == Implementation::Own {
            return self.load_own(precision, device);
        }
        let entry = zoo::lookup(self.architecture).expect("resolved specs name zoo entries");
        let (model, source) = match &self.source {
            DecoderSource::Gguf(g) => {
                let dequantize = precision == Precision::Fp32;
                let model = guard(|| g.load(device, dequantize))?;
                (model, format!("GGUF file {}", g.path.display()))
            }
            source if precision.quant().is_some() => {
                let format = precision.quant().expect("a GGML format");
                let model = guard(|| quantize_load::load(self, format, device))?;
                (model, source_text(source))
            }
            source => {
                let (vb, _) = self.var_builder(precision, device)?;
                let json = self
                    .config_json
                    .as_deref()
                    .expect("random and folder specs have a config");
                let model = guard(|| Ok((entry.build)(json, vb)?))?;
                (model, source_text(source))
            }
        };
        Ok(Box::new(CrateDecoder::new(
            model,
            self.description(precision, device, source),
        )))
    }

    fn description(&self, precision: Precision, device: &Device, source: String) -> Description {
        let entry = zoo::lookup(self.architecture).expect("a zoo entry");
        let version = crate_version();
        let mut implementation = BTreeMap::new();
        let (executed, linear) = match &self.source {
            DecoderSource::Gguf(g) if precision == Precision::Fp32 => (
                "fp32 (the GGUF file's weights dequantized to f32)".to_string(),
                "f32 matmul of the dequantized weights".to_string(),
            ),
            DecoderSource::Gguf(g) => (
                format!(
                    "{} linears as stored in the GGUF file ({}), f32 activations and KV cache",
                    g.main_format.map_or("?", |f| f.name()),
                    g.formats_text()
                ),
                quantized_linear_text(device),
            ),
            _ if precision.quant().is_some() => (
                format!(
                    "{} linears (attention q, k, v, output; MLP gate, up, down) quantized at load; f32 embeddings, norms, attention, KV cache and output projection",
                    precision.quant().map_or("?", |f| f.name())
                ),
                quantized_linear_text(device),
            ),
            _ => (
                dtype_name(self.dtype(precision)).to_string(),
                format!(
                    "{} matmul ({})",
                    dtype_name(self.dtype(precision)),
                    if device.is_cuda() {
                        "cuBLAS"
                    } else {
                        "gemm crate"
                    }
                ),
            ),
        };
        let model = match &self.source {
            DecoderSource::Gguf(g) => {
                format!("candle-transformers {version} {}, eager", g.crate_model())
            }
            _ if precision.quant().is_some() => format!(
                "candle-transformers {version} {}, eager, built from a GGUF written in memory (q and k rows permuted to GGUF's interleaved RoPE)",
                quantize_load::CRATE_MODEL
            ),
            _ => format!("candle-transformers {version} {}, eager", entry.name),
        };
        implementation.insert("model".into(), model);
        implementation.insert("weights".into(), source);
        // GGUF files and quantized-at-load cells run quantized_llama: forward(ids, index_pos).
        let quantized_model =
            matches!(self.source, DecoderSource::Gguf(_)) || precision.quant().is_some();
        let convention = if quantized_model {
            zoo::Convention::Offset
        } else {
            entry.convention
        };
        implementation.insert("calling_convention".into(), convention.describe().into());
        implementation.insert("linear".into(), linear);
        implementation.insert(
            "kv_cache".into(),
            format!("{}, {}", entry.kv_cache, dtype_name(self.dtype(precision))),
        );
        implementation.insert(
            "attention".into(),
            "the crate's eager attention (matmul, softmax, matmul)".into(),
        );
        implementation.insert("execution".into(), "eager (kernel by kernel)".into());
        Description {
            device: device.clone(),
            executed_precision: executed,
            implementation,
        }
    }
}

/// The kernels candle's QMatMul runs, for the record.
fn quantized_linear_text(device: &Device) -> String {
    if device.is_cuda() {
        "candle QMatMul: MMVQ for up to 8 rows (decode at batch <= 8), MMQ above (prefill, larger batches); q8k and float tensors dequantize + GEMM".into()
    } else {
        "candle QMatMul on the CPU: the input quantized to the format's vec-dot type per row, then its vec_dot kernels".into()
    }
}

/// Where random or folder weights come from, for the record.
fn source_text(source: &DecoderSource) -> String {
    match source {
        DecoderSource::Random { seed } => format!("random weights (seed {seed})"),
        DecoderSource::Folder { dir, files } => {
            format!("{} ({} safetensors file(s))", dir.display(), files.len())
        }
        DecoderSource::Gguf(g) => format!("GGUF file {}", g.path.display()),
    }
}

/// Runs a crate constructor, turning its panics (some `unwrap` a missing tensor) into errors.
fn guard<T>(build: impl FnOnce() -> Result<T>) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build));
    std::panic::set_hook(hook);
    match out {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            bail!("building the model failed: {msg}")
        }
    }
}

/// The candle-transformers version this binary was built with (from Cargo.lock, via build.rs).
pub fn crate_version() -> &'static str {
    option_env!("RUNNER_CRATE_VERSIONS")
        .and_then(|all| {
            all.split(';')
                .find_map(|p| p.strip_prefix("candle-transformers "))
        })
        .unwrap_or("0.11")
}
