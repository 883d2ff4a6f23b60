//! BERT-family encoders (DistilBERT and BERT) for sequence classification, written for per-layer
//! access and for quantized linear layers.
//!
//! Why our own and not candle-transformers': upstream DistilBERT fails in f16/bf16 (softmax runs
//! in f32 and is never cast back), uses mask 1 = masked (Hugging Face uses 1 = attend) and keeps
//! its layers private. Here every layer (embeddings, each transformer block, the pooler, the
//! classifier) is callable on its own, and `forward` is nothing but those layers in sequence, so
//! per-layer measurements and the whole-model measurement run exactly the same code. DistilBERT
//! and BERT share the block structure (post-norm attention + FFN); they differ in tensor names,
//! BERT's segment embeddings, and the head.

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, IndexOp, Result, Tensor, D};
use candle_nn::{LayerNorm, VarBuilder};

use super::preset::Preset;
use crate::config::Architecture;
use crate::ops::graph::{CellForward, GraphMode};

mod block;
mod calibrate;
mod calibrate_attention;
mod describe;
mod embeddings;
mod gemms;
mod linear;
mod shapes;
mod units;

pub use crate::model::quant::ggml::ggml_name;
use block::TransformerBlock;
pub use calibrate::{Calibration, CALIBRATION_SENTENCES};
pub use calibrate_attention::AttentionCalibration;
use embeddings::Embeddings;
use linear::Linear;
pub use linear::MMQ_ROW_PADDING;
pub use shapes::{
    check_checkpoint_tensors, check_hf_config, random_tensors, save_hf_dir, tensor_shapes,
};
pub use units::{CapturedUnit, Component, Hidden, Layer, LinearSite, Pooling, Unit};

/// What the weights and activations are held in: every float tensor in `float`, and every linear
/// layer's weight in `quant` when set (its bias stays in `float`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Numerics {
    pub float: DType,
    pub quant: Option<GgmlDType>,
    /// Linear layers in W8A8 (weights and inputs in 8 bits); exclusive with `quant`.
    pub eight_bit: Option<crate::config::EightBit>,
}

impl Numerics {
    /// Whether linear layers would leave the float path.
    pub fn quantizes(&self) -> bool {
        self.quant.is_some() || self.eight_bit.is_some()
    }

    /// The same float dtype, linear layers unquantized: a layer the `quantize` axis leaves out.
    pub fn float_only(self) -> Self {
        Self {
            quant: None,
            eight_bit: None,
            ..self
        }
    }
}

/// Which linear layers take the quantized numerics when the numerics quantize; the others are
/// built as float linears (the same `Linear::load`, handed float-only numerics).
pub type SiteFilter<'a> = &'a dyn Fn(LinearSite) -> bool;

/// Tensor names of one architecture's checkpoints.
struct Names {
    blocks: &'static str,
    query: &'static str,
    key: &'static str,
    value: &'static str,
    attention_out: &'static str,
    sa_layer_norm: &'static str,
    ffn_in: &'static str,
    ffn_out: &'static str,
    output_layer_norm: &'static str,
}

impl Names {
    fn of(arch: Architecture) -> Self {
        match arch {
            Architecture::Distilbert => Names {
                blocks: "transformer.layer",
                query: "attention.q_lin",
                key: "attention.k_lin",
                value: "attention.v_lin",
                attention_out: "attention.out_lin",
                sa_layer_norm: "sa_layer_norm",
                ffn_in: "ffn.lin1",
                ffn_out: "ffn.lin2",
                output_layer_norm: "output_layer_norm",
            },
            Architecture::Bert => Names {
                blocks: "encoder.layer",
                query: "attention.self.query",
                key: "attention.self.key",
                value: "attention.self.value",
                attention_out: "attention.output.dense",
                sa_layer_norm: "attention.output.LayerNorm",
                ffn_in: "intermediate.dense",
                ffn_out: "output.dense",
                output_layer_norm: "output.LayerNorm",
            },
        }
    }
}

fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    // candle's fused layer-norm accumulates in f32 for f16/bf16 inputs.
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(LayerNorm::new(weight, bias, eps))
}

/// Where the classifier comes from.
pub enum Head<'a> {
    /// The checkpoint's (or the random weights') own pooler and classifier.
    Checkpoint,
    /// Mean pooling and a linear probe; `None` builds the feature extractor the probe is trained on
    /// (no classifier).
    Probe(Option<VarBuilder<'a>>),
}

pub struct Encoder {
    embeddings: Embeddings,
    blocks: Vec<TransformerBlock>,
    pooling: Pooling,
    /// Weights of the [CLS] poolers; none for mean pooling.
    pooler: Option<Linear>,
    classifier: Option<Linear>,
    /// The linear sites built with quantized numerics (empty for a float precision).
    quantized: Vec<LinearSite>,
    device: Device,
    /// `device.ffn_activation_scales = "static"`: how the FFNs' steps were calibrated.
    static_calibration: Option<Calibration>,
    /// `device.attention_activation_scales = "static"`: how the attention's steps were calibrated.
    attention_calibration: Option<calibrate_attention::AttentionCalibration>,
}

impl Encoder {
    /// Loads from Hugging Face names: `DistilBertForSequenceClassification` (`distilbert.*`,
    /// `pre_classifier.*`, `classifier.*`), `BertForSequenceClassification` (`bert.*`,
    /// `classifier.*`) or a bare `BertModel` (no prefix, no classifier: use a probe head). The
    /// var builder holds the float dtype and the device.
    pub fn load(vb: VarBuilder, preset: &Preset, numerics: Numerics, head: Head) -> Result<Self> {
        Self::load_selected(vb, preset, numerics, head, &|_| true)
    }

    /// [`Self::load`] with only the linear sites `quantize` accepts in the quantized numerics;
    /// every other linear layer is a float linear of the same float dtype.
    pub fn load_selected(
        vb: VarBuilder,
        preset: &Preset,
        numerics: Numerics,
        head: Head,
        quantize: SiteFilter,
    ) -> Result<Self> {
        let mut quantized = Vec::new();
        let mut at = |site: LinearSite| {
            if numerics.quantizes() && quantize(site) {
                quantized.push(site);
                numerics
            } else {
                numerics.float_only()
            }
        };
        let names = Names::of(preset.architecture);
        let body = match preset.architecture {
            Architecture::Distilbert => vb.pp("distilbert"),
            Architecture::Bert if vb.contains_tensor("bert.embeddings.word_embeddings.weight") => {
                vb.pp("bert")
            }
            Architecture::Bert => vb.clone(),
        };
        let blocks = (0..preset.n_layers)
            .map(|i| {
                let (attention, ffn) = (at(LinearSite::Attention(i)), at(LinearSite::Ffn(i)));
                TransformerBlock::load(body.pp(names.blocks).pp(i), preset, &names, attention, ffn)
            })
            .collect::<Result<Vec<_>>>()?;
        let d = preset.dim;
        let labels = preset.num_labels;
        let (pooling, pooler, classifier) = match (head, preset.architecture) {
            (Head::Checkpoint, Architecture::Distilbert) => (
                Pooling::PreClassifier,
                Some(Linear::load(
                    d,
                    d,
                    vb.pp("pre_classifier"),
                    at(LinearSite::Pooler),
                )?),
                Some(Linear::load(
                    d,
                    labels,
                    vb.pp("classifier"),
                    at(LinearSite::Classifier),
                )?),
            ),
            (Head::Checkpoint, Architecture::Bert) => {
                if !vb.contains_tensor("classifier.weight") {
                    candle_core::bail!(
                        "the checkpoint has no classifier.weight (a bare BertModel, e.g. a sentence-embedding model): set the model's head = \"probe\""
                    );
                }
                (
                    Pooling::BertPooler,
                    Some(Linear::load(
                        d,
                        d,
                        body.pp("pooler.dense"),
                        at(LinearSite::Pooler),
                    )?),
                    Some(Linear::load(
                        d,
                        labels,
                        vb.pp("classifier"),
                        at(LinearSite::Classifier),
                    )?),
                )
            }
            (Head::Probe(classifier), _) => (
                Pooling::Mean,
                None,
                classifier
                    .map(|c| {
                        let numerics = at(LinearSite::Classifier);
                        Linear::load(d, labels, c.to_dtype(vb.dtype()), numerics)
                    })
                    .transpose()?,
            ),
        };
        let mut encoder = Self {
            embeddings: Embeddings::load(body.pp("embeddings"), preset)?,
            blocks,
            pooling,
            pooler,
            classifier,
            quantized,
            device: vb.device().clone(),
            static_calibration: None,
            attention_calibration: None,
        };
        encoder.set_fused_quantization(true);
        Ok(encoder)
    }

    /// Whether W8A8 inputs are quantized inside the kernel that produces them (default): lin2's in
    /// lin1's GELU kernel, lin1's in the attention's layer norm, the next block's Q/K/V
    /// projection's in the FFN's layer norm; or each in a pass of its own
    /// (`device.fuse_quantization = false`, for comparison). No effect on other precisions or off
    /// the tensor-core path. The first block's input (the embeddings') is quantized in a pass.
    pub fn set_fused_quantization(&mut self, on: bool) {
        for b in &mut self.blocks {
            b.set_fused_quantization(on);
        }
        for i in 0..self.blocks.len() {
            // The last block's output goes to the pooler (a float [CLS] row or mean pooling).
            let next = self.blocks.get(i + 1).and_then(|b| b.qkv_input_format());
            self.blocks[i]
                .output_layer_norm
                .set_quantizes_for(next.filter(|_| on));
        }
    }

    /// The residual + layer norms whose kernel also quantizes their output for the next W8A8
    /// GEMM.
    pub fn norms_quantizing(&self) -> usize {
        self.blocks
            .iter()
            .flat_map(|b| [&b.sa_layer_norm, &b.output_layer_norm])
            .filter(|n| n.quantizes_for.is_some())
            .count()
    }

    /// FP8 GEMMs with cuBLASLt's fast accumulation (`device.fp8_fast_accumulation`): no
    /// periodic promotion of the tensor cores' partial sums to f32. No effect on int8 (exact
    /// int32 sums), floats or the CPU reference.
    pub fn set_fp8_fast_accumulation(&mut self, on: bool) {
        let set = |l: &mut Linear| {
            if let Linear::EightBit(e) = l {
                e.set_fp8_fast_accumulation(on);
            }
        };
        for b in &mut self.blocks {
            if let Some(qkv) = &mut b.qkv {
                set(&mut qkv.projection);
            }
            for l in [
                &mut b.q_lin,
                &mut b.k_lin,
                &mut b.v_lin,
                &mut b.out_lin,
                &mut b.lin1,
                &mut b.lin2,
            ] {
                set(l);
            }
        }
        self.pooler
            .iter_mut()
            .chain(&mut self.classifier)
            .for_each(set);
    }

    /// Whether any FP8 GEMM runs with fast accumulation (the setter sets all alike).
    pub(super) fn fp8_fast_accumulation(&self) -> bool {
        self.linears()
            .any(|l| matches!(l, Linear::EightBit(e) if e.fp8_fast_accumulation()))
    }

    /// The residual + layer norms that add the preceding float linear's bias.
    pub(super) fn norms_adding_linear_bias(&self) -> usize {
        self.blocks
            .iter()
            .flat_map(|b| [&b.sa_layer_norm, &b.output_layer_norm])
            .filter(|n| n.adds_linear_bias)
            .count()
    }

    /// The FFNs whose lin2 input is quantized inside lin1's GELU kernel.
    pub fn ffns_quantized_in_gelu(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| b.gelu_quantizes && linear::ffn_fuses(&b.lin1, &b.lin2))
            .count()
    }

    pub fn quantized_sites(&self) -> Vec<String> {
        self.quantized
            .iter()
            .map(|s| s.name(self.pooling))
            .collect()
    }

    /// Every linear site of this model, in execution order.
    pub fn linear_sites(&self) -> Vec<LinearSite> {
        self.layers()
            .into_iter()
            .flat_map(LinearSite::of_layer)
            .collect()
    }

    /// The first `n` top-level layers (see [`Self::layers`]) on a batch: embeddings alone for 1,
    /// the whole forward pass (the logits) for all of them. The prefix-differencing profiler
    /// measures each; a layer is the difference of consecutive prefixes.
    pub fn forward_prefix(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        n: usize,
    ) -> Result<Tensor> {
        let mask = self.additive_mask(attention_mask)?;
        let mut x = Hidden::from(input_ids.clone());
        for layer in self.layers().into_iter().take(n) {
            x = self.forward_layer(layer, &x, &mask)?;
        }
        Ok(x.values)
    }

    /// What really executes, read back from the loaded weights: the float dtype, and the linear
    /// layers' GGML format when quantized (e.g. `fp16`, `q8_0 linears (QMatMul) + fp16`).
    fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.blocks
            .iter()
            .flat_map(|b| [&b.q_lin, &b.k_lin, &b.v_lin, &b.out_lin, &b.lin1, &b.lin2])
            .chain(&self.pooler)
            .chain(&self.classifier)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn layers(&self) -> Vec<Layer> {
        let mut layers = vec![Layer::Embeddings];
        layers.extend((0..self.blocks.len()).map(Layer::Block));
        layers.push(Layer::Pooler(self.pooling));
        if self.classifier.is_some() {
            layers.push(Layer::Classifier);
        }
        layers
    }

    /// Hugging Face attention mask (batch, seq), 1 = attend, 0 = padding -> additive f32 mask
    /// (batch, 1, 1, seq) with 0 where attended and the most negative f32 where masked.
    pub fn additive_mask(&self, attention_mask: &Tensor) -> Result<Tensor> {
        let (b, s) = attention_mask.dims2()?;
        let keep = attention_mask.to_dtype(DType::F32)?;
        let masked = (1.0 - keep)?;
        (masked * f32::MIN as f64)?.reshape((b, 1, 1, s))
    }

    /// Runs one layer alone. `input` is the token ids for the embeddings and the previous
    /// layer's output otherwise; `additive_mask` comes from [`Self::additive_mask`].
    pub fn forward_layer(
        &self,
        layer: Layer,
        input: &Hidden,
        additive_mask: &Tensor,
    ) -> Result<Hidden> {
        if let Layer::Block(i) = layer {
            return self.blocks[i].forward(input, additive_mask);
        }
        let input = &input.values;
        let values = match layer {
            Layer::Embeddings => self.embeddings.forward(input),
            Layer::Block(_) => unreachable!("returned above"),
            Layer::Pooler(Pooling::Mean) => mean_pool(input, additive_mask),
            Layer::Pooler(kind) => {
                let pooler = self.pooler.as_ref().expect("[CLS] poolers have weights");
                // The [CLS] position; contiguous because CUDA matmul refuses strided inputs.
                let cls = pooler.forward(&input.i((.., 0))?.contiguous()?)?;
                if kind == Pooling::BertPooler {
                    cls.tanh()
                } else {
                    cls.relu()
                }
            }
            Layer::Classifier => match &self.classifier {
                Some(c) => c.forward(input),
                None => candle_core::bail!("this model was built without a classifier"),
            },
        };
        values.map(Hidden::from)
    }

    /// One forward pass that records every unit's real input: each layer, and inside each block its
    /// four components. Order: embeddings, block 0, its components, block 1, ..., classifier.
    pub fn capture_units(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<Vec<CapturedUnit>> {
        let mask = self.additive_mask(attention_mask)?;
        let mut units = Vec::new();
        let mut x = Hidden::from(input_ids.clone());
        for layer in self.layers() {
            units.push(CapturedUnit {
                unit: Unit::Layer(layer),
                input: x.clone(),
                other: layer.uses_mask().then(|| mask.clone()),
            });
            if let Layer::Block(i) = layer {
                let block = &self.blocks[i];
                let mut record = |c: Component, input: &Hidden, other: &Tensor| -> Result<Hidden> {
                    units.push(CapturedUnit {
                        unit: Unit::Component(i, c),
                        input: input.clone(),
                        other: (c != Component::Ffn).then(|| other.clone()),
                    });
                    block.component(c, input, other)
                };
                let attended = record(Component::Attention, &x, &mask)?;
                let h = record(Component::SaLayerNorm, &attended, &x.values)?;
                let ffn = record(Component::Ffn, &h, &h.values)?;
                x = record(Component::OutputLayerNorm, &ffn, &h.values)?;
            } else {
                x = self.forward_layer(layer, &x, &mask)?;
            }
        }
        Ok(units)
    }

    /// Runs one captured unit alone; its output's values (a norm's packed bytes are written too).
    pub fn forward_unit(&self, captured: &CapturedUnit) -> Result<Tensor> {
        let other = captured.other.as_ref().unwrap_or(&captured.input.values);
        let out = match captured.unit {
            Unit::Layer(layer) => self.forward_layer(layer, &captured.input, other),
            Unit::Component(block, c) => self.blocks[block].component(c, &captured.input, other),
        }?;
        Ok(out.values)
    }

    /// Pooled vectors (batch, dim): every layer but the classifier.
    pub fn pooled(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.run(input_ids, attention_mask, false, false)
    }

    /// Like [`Self::forward`], but fails when the encoder's output (the last block's, before the
    /// pooler) or the logits hold NaN or infinite values: DistilBERT's ReLU pooler would turn NaN
    /// into 0 and hide it in finite logits. One extra f32 reduction per check; used outside energy
    /// windows. Without a classifier (a probe's feature extractor) it returns the pooled vectors.
    pub fn forward_checked(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.run(input_ids, attention_mask, true, true)
    }

    /// Logits (batch, num_labels) in the model's float dtype.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let pooled = self.pooled(input_ids, attention_mask)?;
        Ok(self
            .forward_layer(Layer::Classifier, &pooled.clone().into(), &pooled)?
            .values)
    }

    /// The whole forward as a cell runs it per loop, for batches shaped like `ids` / `mask`: on
    /// CUDA captured once as one graph (`ops::graph`), else eager; it says which.
    pub fn cell_forward(&self, ids: &Tensor, mask: &Tensor, mode: GraphMode) -> CellForward<'_> {
        let inputs = [ids.clone(), mask.clone()];
        CellForward::new(&self.device, &inputs, mode, move |x| {
            self.forward(&x[0], &x[1])
        })
    }

    /// The layers in sequence, up to the pooler or through the classifier (where there is one),
    /// optionally checking the encoder output and the logits for non-finite values.
    fn run(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        through_classifier: bool,
        check: bool,
    ) -> Result<Tensor> {
        let mask = self.additive_mask(attention_mask)?;
        let last_block = Layer::Block(self.blocks.len() - 1);
        let mut x = Hidden::from(input_ids.clone());
        for layer in self.layers() {
            if layer == Layer::Classifier && !through_classifier {
                break;
            }
            x = self.forward_layer(layer, &x, &mask)?;
            if check && (layer == last_block || layer == Layer::Classifier) {
                let sum = x
                    .values
                    .to_dtype(DType::F32)?
                    .abs()?
                    .sum_all()?
                    .to_scalar::<f32>()?;
                if !sum.is_finite() {
                    candle_core::bail!(
                        "non-finite values (NaN or infinity) in the output of {}",
                        layer.name()
                    );
                }
            }
        }
        Ok(x.values)
    }
}

/// Masked mean over the sequence in f32 (a sum of 128 f16 values loses precision), then back to
/// the input's dtype. `additive_mask` is 0 where attended.
fn mean_pool(x: &Tensor, additive_mask: &Tensor) -> Result<Tensor> {
    let (b, s, _) = x.dims3()?;
    let keep = additive_mask
        .reshape((b, s, 1))?
        .eq(0f32)?
        .to_dtype(DType::F32)?;
    let summed = x.to_dtype(DType::F32)?.broadcast_mul(&keep)?.sum(1)?;
    let counts = keep.sum(1)?.clamp(1f32, f32::MAX)?;
    summed.broadcast_div(&counts)?.to_dtype(x.dtype())
}

/// Cosine similarity and max absolute difference between two logit tensors, computed in f32.
pub fn compare_logits(a: &Tensor, b: &Tensor) -> Result<(f32, f32)> {
    let a = a.to_dtype(DType::F32)?.flatten_all()?;
    let b = b.to_dtype(DType::F32)?.flatten_all()?;
    let dot = (&a * &b)?.sum_all()?.to_scalar::<f32>()?;
    let na = a.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    let nb = b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    let max_abs = (&a - &b)?.abs()?.max(D::Minus1)?.to_scalar::<f32>()?;
    Ok((dot / (na * nb), max_abs))
}
