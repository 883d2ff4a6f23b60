//! [`DecoderSpec`] for the runner's own Llama-family decoder (`implementation = "own"`): what
//! it can run, how large its weights are, and how it is built; and the float VarBuilder that
//! it and the crate-run models load from.

use anyhow::{bail, Result};
use candle_core::Device;
use candle_nn::VarBuilder;

use super::{llama, DecoderSource, DecoderSpec};
use crate::config::Precision;
use crate::model::weights::random::RandomBackend;
use crate::model::workload::Generate;

impl DecoderSpec {
    /// [`Self::refuses`] for the runner's own decoder: float precisions, and GGML formats
    /// quantized at load where every linear's rows are whole blocks.
    pub(super) fn own_refuses(&self, precision: Precision) -> Option<String> {
        let s = &self.shapes;
        if let (DecoderSource::Gguf(g), Precision::Quantized(format, _)) = (&self.source, precision)
        {
            // A GGUF file runs as stored, never re-quantized (two roundings).
            return match g.main_format {
                Some(stored) if stored == format => None,
                Some(stored) => Some(format!(
                    "{}: {} stores its linears as {} ({}); the runner's own decoder runs a GGUF file as stored, never re-quantized (two roundings): use {}, {}-fp16 or {}-bf16 (or a float precision, dequantized)",
                    precision.name(), g.path.display(), stored.name(), g.formats_text(),
                    stored.name(), stored.name(), stored.name()
                )),
                None => Some(format!(
                    "{}: {} holds no quantized weights ({}): use a float precision",
                    precision.name(), g.path.display(), g.formats_text()
                )),
            };
        }
        match precision {
            Precision::Fp32 | Precision::Fp16 | Precision::Bf16 => None,
            Precision::Quantized(..) if !self.decode_kernels.is_plain() => Some(format!(
                "{}: decode_kernels = \"{}\" fuses float linears (one Q|K|V and one gate|up GEMM); GGML formats run with the plain kernels (leave decode_kernels out)",
                precision.name(),
                self.decode_kernels.name()
            )),
            Precision::Quantized(format, _) => {
                let block = format.block_size();
                let widths = [s.hidden, s.intermediate, s.heads * s.head_dim];
                widths.iter().find(|w| !w.is_multiple_of(block)).map(|w| format!(
                    "{}: {} packs rows in blocks of {block} values, and this model has linear layers {w} wide; choose a format with 32-value blocks (q8_0, q4_0, q4_1, q5_0, q5_1)",
                    precision.name(), format.name()
                ))
            }
            Precision::EightBit(..) => Some(format!(
                "{}: the runner's own Llama-family decoder has no W8A8 linears yet (the encoder's apply to its shapes, but are not wired into it); float and GGML precisions run",
                precision.name()
            )),
        }
    }

    /// Bytes of the weights with every linear (the output projection too) in the GGML format
    /// and the rest (embeddings, norms, biases) in the float dtype.
    pub(super) fn own_quantized_weight_bytes(&self, precision: Precision) -> u64 {
        let s = &self.shapes;
        let format = crate::model::ggml_for(precision.quant().expect("quantized"));
        let per_layer = s.hidden * s.heads * s.head_dim * 2
            + s.hidden * s.kv_heads * s.head_dim * 2
            + 3 * s.hidden * s.intermediate;
        let linears = (s.layers * per_layer + s.vocab * s.hidden) as u64;
        let float = self.dtype(precision).size_in_bytes() as u64;
        let quantized = linears * format.type_size() as u64 / format.block_size() as u64;
        let tied_embedding = if s.tied {
            (s.vocab * s.hidden) as u64
        } else {
            0
        };
        quantized + (s.parameters() - linears + tied_embedding) * float
    }

    /// The runner's own Llama-family decoder on these weights.
    pub(super) fn load_own(
        &self,
        precision: Precision,
        device: &Device,
    ) -> Result<Box<dyn Generate>> {
        let cfg =
            llama::config::FamilyConfig::from_json(self.architecture, self.own_config_json())?;
        let dtype = crate::model::dtype_name(self.dtype(precision));
        let (vb, linears, what) = match &self.source {
            DecoderSource::Gguf(g) if precision.quant().is_some() => {
                let (vb, linears) =
                    llama::gguf_load::stored_linears(&g.path, &cfg, self.dtype(precision), device)?;
                let what = format!(
                    "GGUF file {} ({}), its quantized linears kept as stored (candle QMatMul), the rest dequantized to {dtype}, Q/K rows unpermuted to Hugging Face's rotary order",
                    g.path.display(),
                    g.formats_text(),
                );
                (vb, linears, what)
            }
            DecoderSource::Gguf(g) => (
                llama::gguf_load::var_builder(&g.path, &cfg, self.dtype(precision), device)?,
                llama::linears_of(precision),
                format!(
                    "GGUF file {} ({}), dequantized to {dtype}, Q/K rows unpermuted to Hugging Face's rotary order",
                    g.path.display(),
                    g.formats_text(),
                ),
            ),
            _ => {
                let (vb, what) = self.var_builder(precision, device)?;
                (vb, llama::linears_of(precision), what)
            }
        };
        let mut model = llama::LlamaFamily::load(cfg, vb, linears, what, self.decode_kernels)?;
        model.set_prefill_attention(self.prefill_attention)?;
        Ok(Box::new(model))
    }

    /// The config the own decoder is built from: config.json's text, or a GGUF file's metadata.
    pub(super) fn own_config_json(&self) -> &str {
        match &self.source {
            DecoderSource::Gguf(g) => &g.config_json,
            _ => self
                .config_json
                .as_deref()
                .expect("random and folder specs have a config"),
        }
    }

    /// The float weights of a random or folder spec, and what they are for the record.
    pub(super) fn var_builder(
        &self,
        precision: Precision,
        device: &Device,
    ) -> Result<(VarBuilder<'static>, String)> {
        let dtype = self.dtype(precision);
        Ok(match &self.source {
            DecoderSource::Random { seed } => (
                VarBuilder::from_backend(
                    Box::new(RandomBackend {
                        seed: *seed,
                        std: self.shapes.initializer_range as f32,
                        tied: self.shapes.tied,
                    }),
                    dtype,
                    device.clone(),
                ),
                match self.preset.as_deref().filter(|p| p.ends_with(" layers)")) {
                    Some(cut) => format!("random weights (seed {seed}), preset {cut}"),
                    None => format!("random weights (seed {seed})"),
                },
            ),
            DecoderSource::Folder { dir, files } => (
                // SAFETY: memory-mapped read-only; the runner does not modify the files while
                // the model is loaded (the usual caveat for mmapped files).
                unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }?,
                format!("{} ({} safetensors file(s))", dir.display(), files.len()),
            ),
            DecoderSource::Gguf(_) => bail!("GGUF files have no float VarBuilder"),
        })
    }
}
