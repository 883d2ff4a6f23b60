//! DistilBERT for sequence classification, written for per-layer access.
//!
//! Why our own and not candle-transformers': upstream fails in f16/bf16 (softmax runs in f32 and is
//! never cast back), uses mask 1 = masked (Hugging Face uses 1 = attend) and keeps its layers
//! private. Here every layer (embeddings, each transformer block, pre-classifier, classifier) is
//! callable on its own, and `forward` is nothing but those layers in sequence, so per-layer
//! measurements and the whole-model measurement run exactly the same code.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

use super::preset::Preset;

struct Embeddings {
    word: Embedding,
    position: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, p: &Preset) -> Result<Self> {
        Ok(Self {
            word: candle_nn::embedding(p.vocab_size, p.dim, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                p.max_position_embeddings,
                p.dim,
                vb.pp("position_embeddings"),
            )?,
            norm: layer_norm(p.dim, p.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, seq_len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let words = self.word.forward(input_ids)?;
        let positions = self.position.forward(&positions)?;
        self.norm.forward(&words.broadcast_add(&positions)?)
    }
}

struct TransformerBlock {
    q_lin: Linear,
    k_lin: Linear,
    v_lin: Linear,
    out_lin: Linear,
    sa_layer_norm: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    output_layer_norm: LayerNorm,
    n_heads: usize,
    head_dim: usize,
}

impl TransformerBlock {
    fn load(vb: VarBuilder, p: &Preset) -> Result<Self> {
        let att = vb.pp("attention");
        let ffn = vb.pp("ffn");
        Ok(Self {
            q_lin: candle_nn::linear(p.dim, p.dim, att.pp("q_lin"))?,
            k_lin: candle_nn::linear(p.dim, p.dim, att.pp("k_lin"))?,
            v_lin: candle_nn::linear(p.dim, p.dim, att.pp("v_lin"))?,
            out_lin: candle_nn::linear(p.dim, p.dim, att.pp("out_lin"))?,
            sa_layer_norm: layer_norm(p.dim, p.layer_norm_eps, vb.pp("sa_layer_norm"))?,
            lin1: candle_nn::linear(p.dim, p.hidden_dim, ffn.pp("lin1"))?,
            lin2: candle_nn::linear(p.hidden_dim, p.dim, ffn.pp("lin2"))?,
            output_layer_norm: layer_norm(p.dim, p.layer_norm_eps, vb.pp("output_layer_norm"))?,
            n_heads: p.n_heads,
            head_dim: p.head_dim(),
        })
    }

    /// (batch, seq, dim) -> (batch, heads, seq, head_dim), contiguous: CUDA matmul needs it.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, self.n_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn attention(&self, x: &Tensor, additive_mask: &Tensor) -> Result<Tensor> {
        let (b, s, dim) = x.dims3()?;
        let q = self.split_heads(&self.q_lin.forward(x)?)?;
        let k = self.split_heads(&self.k_lin.forward(x)?)?;
        let v = self.split_heads(&self.v_lin.forward(x)?)?;
        let q = (q * (1.0 / (self.head_dim as f64).sqrt()))?;
        let scores = q.matmul(&k.t()?)?;
        // Softmax in f32 whatever the model's dtype (f16 sums of exponentials lose precision),
        // then back to the model's dtype for the second matmul.
        let dtype = scores.dtype();
        let scores = scores.to_dtype(DType::F32)?.broadcast_add(additive_mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, dim))?;
        self.out_lin.forward(&context)
    }

    /// One component alone. `other` is the additive mask for attention, the residual (the
    /// block's input, or the attention sub-layer's output) for the layer norms, unused for the FFN.
    fn component(&self, c: Component, input: &Tensor, other: &Tensor) -> Result<Tensor> {
        match c {
            Component::Attention => self.attention(input, other),
            Component::SaLayerNorm => self.sa_layer_norm.forward(&(input + other)?),
            Component::Ffn => self.lin2.forward(&self.lin1.forward(input)?.gelu_erf()?),
            Component::OutputLayerNorm => self.output_layer_norm.forward(&(input + other)?),
        }
    }

    /// The block is exactly its four components in sequence (the same calls the per-component
    /// profiler makes).
    fn forward(&self, x: &Tensor, additive_mask: &Tensor) -> Result<Tensor> {
        let attended = self.component(Component::Attention, x, additive_mask)?;
        let h = self.component(Component::SaLayerNorm, &attended, x)?;
        let ffn = self.component(Component::Ffn, &h, &h)?;
        self.component(Component::OutputLayerNorm, &ffn, &h)
    }
}

/// The parts of a transformer block, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// Q/K/V projections, scaled dot-product attention with the mask, output projection.
    Attention,
    /// Residual add + layer norm after attention.
    SaLayerNorm,
    /// lin1 + GELU + lin2.
    Ffn,
    /// Residual add + layer norm after the FFN.
    OutputLayerNorm,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Attention,
        Component::SaLayerNorm,
        Component::Ffn,
        Component::OutputLayerNorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Attention => "attention",
            Component::SaLayerNorm => "sa_layer_norm",
            Component::Ffn => "ffn",
            Component::OutputLayerNorm => "output_layer_norm",
        }
    }
}

/// What the per-layer profiler measures: a whole layer, or a component of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Layer(Layer),
    Component(usize, Component),
}

impl Unit {
    pub fn name(&self) -> String {
        match self {
            Unit::Layer(l) => l.name(),
            Unit::Component(block, c) => format!("transformer_block_{block}.{}", c.name()),
        }
    }

    /// The layer a component belongs to.
    pub fn parent(&self) -> Option<String> {
        match self {
            Unit::Layer(_) => None,
            Unit::Component(block, _) => Some(Layer::Block(*block).name()),
        }
    }
}

/// A unit with the real inputs it received in one forward pass.
pub struct CapturedUnit {
    pub unit: Unit,
    pub input: Tensor,
    /// The mask (attention, blocks), the residual (layer norms), or nothing.
    pub other: Option<Tensor>,
}

fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    // candle's fused layer-norm accumulates in f32 for f16/bf16 inputs.
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(LayerNorm::new(weight, bias, eps))
}

/// One stage of the forward pass, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Embeddings,
    Block(usize),
    PreClassifier,
    Classifier,
}

impl Layer {
    pub fn name(&self) -> String {
        match self {
            Layer::Embeddings => "embeddings".into(),
            Layer::Block(i) => format!("transformer_block_{i}"),
            Layer::PreClassifier => "pre_classifier".into(),
            Layer::Classifier => "classifier".into(),
        }
    }
}

pub struct DistilBert {
    embeddings: Embeddings,
    blocks: Vec<TransformerBlock>,
    pre_classifier: Linear,
    classifier: Linear,
    device: Device,
}

impl DistilBert {
    /// Loads from Hugging Face names (`DistilBertForSequenceClassification`): `distilbert.*`,
    /// `pre_classifier.*`, `classifier.*`. The var builder casts to its dtype and device.
    pub fn load(vb: VarBuilder, preset: &Preset) -> Result<Self> {
        let body = vb.pp("distilbert");
        let blocks = (0..preset.n_layers)
            .map(|i| TransformerBlock::load(body.pp("transformer.layer").pp(i), preset))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: Embeddings::load(body.pp("embeddings"), preset)?,
            blocks,
            pre_classifier: candle_nn::linear(preset.dim, preset.dim, vb.pp("pre_classifier"))?,
            classifier: candle_nn::linear(preset.dim, preset.num_labels, vb.pp("classifier"))?,
            device: vb.device().clone(),
        })
    }

    /// The dtype the weights really hold (what executes), read back from a weight tensor.
    pub fn weight_dtype(&self) -> DType {
        self.classifier.weight().dtype()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn layers(&self) -> Vec<Layer> {
        let mut layers = vec![Layer::Embeddings];
        layers.extend((0..self.blocks.len()).map(Layer::Block));
        layers.extend([Layer::PreClassifier, Layer::Classifier]);
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
        input: &Tensor,
        additive_mask: &Tensor,
    ) -> Result<Tensor> {
        match layer {
            Layer::Embeddings => self.embeddings.forward(input),
            Layer::Block(i) => self.blocks[i].forward(input, additive_mask),
            Layer::PreClassifier => {
                // The [CLS] position; contiguous because CUDA matmul refuses strided inputs.
                let cls = input.i((.., 0))?.contiguous()?;
                self.pre_classifier.forward(&cls)?.relu()
            }
            Layer::Classifier => self.classifier.forward(input),
        }
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
        let mut x = input_ids.clone();
        for layer in self.layers() {
            units.push(CapturedUnit {
                unit: Unit::Layer(layer),
                input: x.clone(),
                other: matches!(layer, Layer::Block(_)).then(|| mask.clone()),
            });
            if let Layer::Block(i) = layer {
                let block = &self.blocks[i];
                let mut record = |c: Component, input: &Tensor, other: &Tensor| -> Result<Tensor> {
                    units.push(CapturedUnit {
                        unit: Unit::Component(i, c),
                        input: input.clone(),
                        other: (c != Component::Ffn).then(|| other.clone()),
                    });
                    block.component(c, input, other)
                };
                let attended = record(Component::Attention, &x, &mask)?;
                let h = record(Component::SaLayerNorm, &attended, &x)?;
                let ffn = record(Component::Ffn, &h, &h)?;
                x = record(Component::OutputLayerNorm, &ffn, &h)?;
            } else {
                x = self.forward_layer(layer, &x, &mask)?;
            }
        }
        Ok(units)
    }

    /// Runs one captured unit alone.
    pub fn forward_unit(&self, captured: &CapturedUnit) -> Result<Tensor> {
        let other = captured.other.as_ref().unwrap_or(&captured.input);
        match captured.unit {
            Unit::Layer(layer) => self.forward_layer(layer, &captured.input, other),
            Unit::Component(block, c) => self.blocks[block].component(c, &captured.input, other),
        }
    }

    /// Logits (batch, num_labels) in the model's dtype.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let mask = self.additive_mask(attention_mask)?;
        let mut x = input_ids.clone();
        for layer in self.layers() {
            x = self.forward_layer(layer, &x, &mask)?;
        }
        Ok(x)
    }
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
