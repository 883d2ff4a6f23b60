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

use std::collections::BTreeMap;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use super::preset::Preset;
use crate::config::Architecture;

/// What the weights and activations are held in: every float tensor in `float`, and every linear
/// layer's weight in `quant` when set (its bias stays in `float`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Numerics {
    pub float: DType,
    pub quant: Option<GgmlDType>,
}

/// A linear layer, float or quantized.
enum Linear {
    Float(candle_nn::Linear),
    Quantized {
        weight: QMatMul,
        bias: Tensor,
        /// Zero columns appended to the weight and to every input (see [`MMQ_ROW_PADDING`]).
        pad: usize,
    },
}

/// candle 0.11's CUDA quantized matmul (MMQ, which pads rows to this many columns) returned NaN/inf
/// for some weights of input width 384 (all-MiniLM-L6-v2), deterministically per weight and in
/// f32, f16 and bf16 activations, on an H100 (examples/qmatmul_check.rs); widths 768, 1536 and 3072
/// (DistilBERT-base, MiniLM's FFN) never did, in 60 whole-model cells and the checks. On CUDA,
/// layers narrower than this get zero columns up to it: the same products, and the records say so.
pub const MMQ_ROW_PADDING: usize = 512;

impl Linear {
    fn load(in_dim: usize, out_dim: usize, vb: VarBuilder, numerics: Numerics) -> Result<Self> {
        let Some(format) = numerics.quant else {
            return candle_nn::linear(in_dim, out_dim, vb).map(Linear::Float);
        };
        // Quantize from the f32 weights, not from their float-dtype rounding.
        let w = vb.to_dtype(DType::F32).get((out_dim, in_dim), "weight")?;
        let pad = if vb.device().is_cuda() && in_dim < MMQ_ROW_PADDING {
            MMQ_ROW_PADDING - in_dim
        } else {
            0
        };
        let w = if pad > 0 {
            w.pad_with_zeros(1, 0, pad)?
        } else {
            w
        };
        let weight = QMatMul::from_qtensor(QTensor::quantize(&w, format)?)?;
        if !matches!(weight, QMatMul::QTensor(_)) {
            // CANDLE_DEQUANTIZE_ALL(_F16) would silently turn this into a float matmul.
            candle_core::bail!(
                "candle dequantized the {format:?} weights (CANDLE_DEQUANTIZE_ALL or CANDLE_DEQUANTIZE_ALL_F16 is set): unset it to measure quantized matmuls"
            );
        }
        Ok(Linear::Quantized {
            weight,
            bias: vb.get(out_dim, "bias")?,
            pad,
        })
    }

    /// The layer, then erf GELU: fused with the bias add on CUDA.
    fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Float(l) => linear_2d(l, x, true),
            Linear::Quantized { weight, bias, pad } => {
                quantized_forward(weight, bias, *pad, x, true)
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Float(l) => linear_2d(l, x, false),
            Linear::Quantized { weight, bias, pad } => {
                quantized_forward(weight, bias, *pad, x, false)
            }
        }
    }

    fn padded(&self) -> bool {
        matches!(self, Linear::Quantized { pad, .. } if *pad > 0)
    }

    fn quant_format(&self) -> Option<GgmlDType> {
        match self {
            Linear::Float(_) => None,
            Linear::Quantized { weight, .. } => match weight {
                QMatMul::QTensor(t) => Some(t.dtype()),
                _ => None,
            },
        }
    }

    fn float_dtype(&self) -> DType {
        match self {
            Linear::Float(l) => l.weight().dtype(),
            Linear::Quantized { bias, .. } => bias.dtype(),
        }
    }
}

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

struct Embeddings {
    word: Embedding,
    position: Embedding,
    /// BERT's segment embedding of type 0 (every input is one segment); DistilBERT has none.
    segment: Option<Tensor>,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, p: &Preset) -> Result<Self> {
        let segment = if p.type_vocab_size > 0 {
            let table = vb.get((p.type_vocab_size, p.dim), "token_type_embeddings.weight")?;
            Some(table.i(0)?)
        } else {
            None
        };
        Ok(Self {
            word: candle_nn::embedding(p.vocab_size, p.dim, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                p.max_position_embeddings,
                p.dim,
                vb.pp("position_embeddings"),
            )?,
            segment,
            norm: layer_norm(p.dim, p.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, seq_len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let words = self.word.forward(input_ids)?;
        let mut positions = self.position.forward(&positions)?;
        if let Some(segment) = &self.segment {
            positions = positions.broadcast_add(segment)?;
        }
        self.norm.forward(&words.broadcast_add(&positions)?)
    }
}

struct TransformerBlock {
    q_lin: Linear,
    k_lin: Linear,
    v_lin: Linear,
    /// Query, key and value in one GEMM (weights concatenated, the query's scaled by
    /// 1/sqrt(head_dim) at load): one launch and one head-splitting copy instead of three each.
    /// Float linears only; quantized ones keep their three QMatMuls.
    qkv: Option<candle_nn::Linear>,
    out_lin: Linear,
    sa_layer_norm: ResidualNorm,
    lin1: Linear,
    lin2: Linear,
    output_layer_norm: ResidualNorm,
    n_heads: usize,
    head_dim: usize,
}

impl TransformerBlock {
    fn load(vb: VarBuilder, p: &Preset, names: &Names, numerics: Numerics) -> Result<Self> {
        let (d, h) = (p.dim, p.hidden_dim);
        let eps = p.layer_norm_eps;
        let q_lin = Linear::load(d, d, vb.pp(names.query), numerics)?;
        let k_lin = Linear::load(d, d, vb.pp(names.key), numerics)?;
        let v_lin = Linear::load(d, d, vb.pp(names.value), numerics)?;
        let qkv = fuse_qkv(&q_lin, &k_lin, &v_lin, 1.0 / (p.head_dim() as f64).sqrt())?;
        Ok(Self {
            q_lin,
            k_lin,
            v_lin,
            qkv,
            out_lin: Linear::load(d, d, vb.pp(names.attention_out), numerics)?,
            sa_layer_norm: ResidualNorm::load(d, eps, vb.pp(names.sa_layer_norm))?,
            lin1: Linear::load(d, h, vb.pp(names.ffn_in), numerics)?,
            lin2: Linear::load(h, d, vb.pp(names.ffn_out), numerics)?,
            output_layer_norm: ResidualNorm::load(d, eps, vb.pp(names.output_layer_norm))?,
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
        if let Some(qkv) = &self.qkv {
            // One GEMM over batch x seq rows; then, from its output in place, one attention kernel
            // on CUDA (f16/bf16), else bias add + head split, the batched GEMMs and the softmax.
            let projected = x.reshape((b * s, dim))?.matmul(&qkv.weight().t()?)?;
            let bias = qkv.bias().expect("fuse_qkv keeps only linears with biases");
            let context =
                super::attention::attention(&projected, bias, additive_mask, s, self.n_heads)?;
            return self.out_lin.forward(&context);
        }
        let q = self.split_heads(&self.q_lin.forward(x)?)?;
        let q = (q * (1.0 / (self.head_dim as f64).sqrt()))?;
        let k = self.split_heads(&self.k_lin.forward(x)?)?;
        let v = self.split_heads(&self.v_lin.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?;
        let dtype = scores.dtype();
        let probs = if super::fused::fused_on(x.device()) {
            // One kernel of the runner's: mask add and softmax in f32, read and written in the
            // model's dtype (candle's broadcast add and softmax were two slow passes).
            super::fused::masked_softmax(&scores, additive_mask)?
        } else {
            // The CPU softmax would sum f16 exponentials in f16: compute it in f32.
            let scores = scores.to_dtype(DType::F32)?.broadcast_add(additive_mask)?;
            candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?
        };
        self.out_lin
            .forward(&super::fused::merge_heads(&probs.matmul(&v)?)?)
    }

    /// One component alone. `other` is the additive mask for attention, the residual (the
    /// block's input, or the attention sub-layer's output) for the layer norms, unused for the FFN.
    fn component(&self, c: Component, input: &Tensor, other: &Tensor) -> Result<Tensor> {
        match c {
            Component::Attention => self.attention(input, other),
            Component::SaLayerNorm => self.sa_layer_norm.forward(input, other),
            Component::Ffn => self.lin2.forward(&self.lin1.forward_gelu(input)?),
            Component::OutputLayerNorm => self.output_layer_norm.forward(input, other),
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

/// A float linear layer on (batch, seq, in) as one (batch*seq, in) x (in, out) GEMM: candle's
/// `Linear` turns a 3-D input into a batched matmul against the broadcast weight, one small GEMM per
/// sequence, which keeps cuBLAS far from the tensor cores' throughput at large batches.
/// On CUDA the bias add (and the GELU after it, when `gelu`) is one kernel of the runner's
/// (`fused::bias_act`): candle's broadcast add cost three times the GEMM.
fn linear_2d(l: &candle_nn::Linear, x: &Tensor, gelu: bool) -> Result<Tensor> {
    let run = |x: &Tensor| -> Result<Tensor> {
        match l.bias() {
            Some(bias) if super::fused::fused_on(x.device()) => {
                super::fused::bias_act(&x.matmul(&l.weight().t()?)?, bias, gelu)
            }
            _ => {
                let y = l.forward(x)?;
                if gelu {
                    y.gelu_erf()
                } else {
                    Ok(y)
                }
            }
        }
    };
    match x.dims() {
        &[b, s, d] => run(&x.reshape((b * s, d))?)?.reshape((b, s, ())),
        _ => run(x),
    }
}

/// A quantized linear: candle's QMatMul, then the bias add (+ GELU) as the float path does it
/// (one runner kernel on CUDA, where candle's broadcast add took twice the QMatMul itself).
fn quantized_forward(
    weight: &QMatMul,
    bias: &Tensor,
    pad: usize,
    x: &Tensor,
    gelu: bool,
) -> Result<Tensor> {
    // QMatMul wants contiguous inputs on every backend (padding makes a contiguous copy).
    let x = if pad > 0 {
        x.pad_with_zeros(D::Minus1, 0, pad)?
    } else {
        x.contiguous()?
    };
    super::fused::bias_act(&weight.forward(&x)?, bias, gelu)
}

/// The fused query/key/value projection (see `TransformerBlock::qkv`); `None` unless all three are
/// float linears with biases.
fn fuse_qkv(
    q: &Linear,
    k: &Linear,
    v: &Linear,
    query_scale: f64,
) -> Result<Option<candle_nn::Linear>> {
    let (Linear::Float(q), Linear::Float(k), Linear::Float(v)) = (q, k, v) else {
        return Ok(None);
    };
    let (Some(qb), Some(kb), Some(vb)) = (q.bias(), k.bias(), v.bias()) else {
        return Ok(None);
    };
    let dtype = q.weight().dtype();
    // Scaled in f32, rounded once to the model's dtype (exact for head_dim 64: 1/8).
    let scaled = |t: &Tensor| (t.to_dtype(DType::F32)? * query_scale)?.to_dtype(dtype);
    let weight = Tensor::cat(&[&scaled(q.weight())?, k.weight(), v.weight()], 0)?;
    let bias = Tensor::cat(&[&scaled(qb)?, kb, vb], 0)?;
    Ok(Some(candle_nn::Linear::new(weight, Some(bias))))
}

/// Residual add + layer norm, as a transformer block ends each sub-layer: one runner kernel on
/// CUDA (candle's add and layer norm were two passes), candle's two elsewhere.
struct ResidualNorm {
    norm: LayerNorm,
    /// Weight and bias stacked (2, dim), the fused kernel's third input.
    gamma_beta: Tensor,
}

impl ResidualNorm {
    fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let norm = layer_norm(dim, eps, vb)?;
        let bias = norm.bias().expect("layer_norm loads a bias");
        let gamma_beta = Tensor::stack(&[norm.weight(), bias], 0)?;
        Ok(Self { norm, gamma_beta })
    }

    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if super::fused::fused_on(x.device()) {
            super::fused::add_layer_norm(x, residual, &self.gamma_beta, self.norm.eps())
        } else {
            self.norm.forward(&(x + residual)?)
        }
    }
}

fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    // candle's fused layer-norm accumulates in f32 for f16/bf16 inputs.
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(LayerNorm::new(weight, bias, eps))
}

/// How the encoder's output becomes one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// DistilBERT's head: [CLS] -> pre_classifier -> ReLU.
    PreClassifier,
    /// BERT's head: [CLS] -> pooler.dense -> tanh.
    BertPooler,
    /// Masked mean over the real tokens (sentence-transformers), in f32; no weights.
    Mean,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::PreClassifier => "pre_classifier",
            Pooling::BertPooler => "pooler",
            Pooling::Mean => "mean_pooling",
        }
    }
}

/// One stage of the forward pass, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Embeddings,
    Block(usize),
    Pooler(Pooling),
    Classifier,
}

impl Layer {
    pub fn name(&self) -> String {
        match self {
            Layer::Embeddings => "embeddings".into(),
            Layer::Block(i) => format!("transformer_block_{i}"),
            Layer::Pooler(p) => p.name().into(),
            Layer::Classifier => "classifier".into(),
        }
    }

    /// Whether the layer reads the attention mask (as its second input).
    fn uses_mask(&self) -> bool {
        matches!(self, Layer::Block(_) | Layer::Pooler(Pooling::Mean))
    }
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
    device: Device,
}

impl Encoder {
    /// Loads from Hugging Face names: `DistilBertForSequenceClassification` (`distilbert.*`,
    /// `pre_classifier.*`, `classifier.*`), `BertForSequenceClassification` (`bert.*`,
    /// `classifier.*`) or a bare `BertModel` (no prefix, no classifier: use a probe head). The
    /// var builder holds the float dtype and the device.
    pub fn load(vb: VarBuilder, preset: &Preset, numerics: Numerics, head: Head) -> Result<Self> {
        let names = Names::of(preset.architecture);
        let body = match preset.architecture {
            Architecture::Distilbert => vb.pp("distilbert"),
            Architecture::Bert if vb.contains_tensor("bert.embeddings.word_embeddings.weight") => {
                vb.pp("bert")
            }
            Architecture::Bert => vb.clone(),
        };
        let blocks = (0..preset.n_layers)
            .map(|i| TransformerBlock::load(body.pp(names.blocks).pp(i), preset, &names, numerics))
            .collect::<Result<Vec<_>>>()?;
        let d = preset.dim;
        let labels = preset.num_labels;
        let (pooling, pooler, classifier) = match (head, preset.architecture) {
            (Head::Checkpoint, Architecture::Distilbert) => (
                Pooling::PreClassifier,
                Some(Linear::load(d, d, vb.pp("pre_classifier"), numerics)?),
                Some(Linear::load(d, labels, vb.pp("classifier"), numerics)?),
            ),
            (Head::Checkpoint, Architecture::Bert) => {
                if !vb.contains_tensor("classifier.weight") {
                    candle_core::bail!(
                        "the checkpoint has no classifier.weight (a bare BertModel, e.g. a sentence-embedding model): set the model's head = \"probe\""
                    );
                }
                (
                    Pooling::BertPooler,
                    Some(Linear::load(d, d, body.pp("pooler.dense"), numerics)?),
                    Some(Linear::load(d, labels, vb.pp("classifier"), numerics)?),
                )
            }
            (Head::Probe(classifier), _) => (
                Pooling::Mean,
                None,
                classifier
                    .map(|c| Linear::load(d, labels, c.to_dtype(vb.dtype()), numerics))
                    .transpose()?,
            ),
        };
        Ok(Self {
            embeddings: Embeddings::load(body.pp("embeddings"), preset)?,
            blocks,
            pooling,
            pooler,
            classifier,
            device: vb.device().clone(),
        })
    }

    /// What really executes, read back from the loaded weights: the float dtype, and the linear
    /// layers' GGML format when quantized (e.g. `fp16`, `q8_0 linears (QMatMul) + fp16`).
    pub fn executed_precision(&self) -> String {
        let linear = self.linears().next();
        let float = linear.map(|l| l.float_dtype()).unwrap_or(DType::F32);
        let float = crate::sweep::dtype_name(float);
        let padded = self.linears().any(|l| l.padded());
        match linear.and_then(|l| l.quant_format()) {
            Some(q) if padded => format!(
                "{} linears (QMatMul, inputs narrower than {MMQ_ROW_PADDING} zero-padded to it) + {float}",
                ggml_name(q)
            ),
            Some(q) => format!("{} linears (QMatMul) + {float}", ggml_name(q)),
            None => float.to_string(),
        }
    }

    /// Which implementation ran each part of the forward pass, for the record: numbers from
    /// different kernels must not be compared as if they were one thing.
    pub fn implementation(&self) -> BTreeMap<String, String> {
        let cuda = self.device.is_cuda();
        let dtype = self
            .linears()
            .next()
            .map(|l| crate::sweep::dtype_name(l.float_dtype()))
            .unwrap_or("fp32");
        let matmul = if cuda { "cuBLAS" } else { "gemm crate" };
        let fused = self.blocks.iter().all(|b| b.qkv.is_some());
        let kernels = super::fused::fused_on(&self.device);
        let projections = match (fused, kernels) {
            (true, true) => format!(
                "Q, K, V in one GEMM ({matmul}, query pre-scaled), bias add + head split in one runner kernel"
            ),
            (true, false) => format!("Q, K, V in one GEMM ({matmul}, query pre-scaled)"),
            (false, _) => "Q, K, V as three linears".to_string(),
        };
        let merge = if kernels {
            "; head merge in a runner kernel"
        } else {
            ""
        };
        let softmax = if kernels {
            format!("mask add + softmax in one runner kernel (f32 arithmetic, {dtype} in and out)")
        } else {
            "mask add + softmax in f32 (candle CPU)".to_string()
        };
        let linear = match self.linears().next().and_then(|l| l.quant_format()) {
            Some(q) if kernels => format!(
                "GGML {} QMatMul (MMQ int8 tensor-core kernels), then the runner's fused bias(+GELU) kernel",
                ggml_name(q)
            ),
            Some(q) => format!("GGML {} QMatMul + bias add", ggml_name(q)),
            None if kernels => {
                format!("candle matmul ({matmul}), then the runner's fused bias(+GELU) kernel")
            }
            None => format!("candle matmul ({matmul}) + bias add"),
        };
        let activation = if kernels {
            "erf GELU fused with the FFN's bias add (runner kernel)"
        } else {
            "erf GELU (candle kernel)"
        };
        let float = self.linears().next().map(|l| l.float_dtype());
        let one_kernel = fused
            && self.blocks.first().is_some_and(|b| {
                float.is_some_and(|d| super::attention::one_kernel_on(&self.device, d, b.head_dim))
            });
        let attention = if one_kernel {
            format!(
                "Q, K, V in one GEMM ({matmul}, query pre-scaled); then one runner kernel reading its output in place: bias add, QK^T, mask, online softmax (f32) and PV on tensor cores (mma.sync m16n8k16, f32 accumulate, scores and softmax in registers) per 64-query tile, context written merged; no score tensor in memory"
            )
        } else {
            format!("{projections}; QK^T and PV as batched GEMMs ({matmul}); {softmax}{merge}; no fused attention kernel")
        };
        [
            ("attention", attention),
            ("linear", linear),
            (
                "layer_norm",
                if kernels {
                    "residual add + layer norm in one runner kernel (f32 arithmetic)"
                } else {
                    "candle-nn fused layer_norm kernel"
                }
                .to_string(),
            ),
            ("activation", activation.to_string()),
        ]
        .into_iter()
        // src/device.rs opens every CUDA device so.
        .chain(cuda.then(|| {
            (
                "allocator",
                "CUDA stream-ordered pool, freed memory kept between batches; one stream, no per-tensor event tracking".to_string(),
            )
        }))
        .chain(cuda.then(|| ("gemm_precision", gemm_precision(float))))
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

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
        input: &Tensor,
        additive_mask: &Tensor,
    ) -> Result<Tensor> {
        match layer {
            Layer::Embeddings => self.embeddings.forward(input),
            Layer::Block(i) => self.blocks[i].forward(input, additive_mask),
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
                other: layer.uses_mask().then(|| mask.clone()),
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
        self.forward_layer(Layer::Classifier, &pooled, &pooled)
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
        let mut x = input_ids.clone();
        for layer in self.layers() {
            if layer == Layer::Classifier && !through_classifier {
                break;
            }
            x = self.forward_layer(layer, &x, &mask)?;
            if check && (layer == last_block || layer == Layer::Classifier) {
                let sum = x
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
        Ok(x)
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

/// What cuBLAS accumulates the float GEMMs in (candle's reduced-precision switches, all off unless
/// set): fp32 GEMMs are true fp32 unless TF32 is on, and the record says which.
fn gemm_precision(float: Option<DType>) -> String {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend as cb;
        let (reduced, what) = match float {
            Some(DType::F16) => (cb::gemm_reduced_precision_f16(), "f16 accumulation"),
            Some(DType::BF16) => (cb::gemm_reduced_precision_bf16(), "bf16-rounded reductions"),
            _ => (cb::gemm_reduced_precision_f32(), "TF32 tensor cores"),
        };
        if reduced {
            format!("reduced: {what}")
        } else {
            "f32 accumulation (CUBLAS_COMPUTE_32F; fp32 GEMMs without TF32)".to_string()
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = float;
        "f32 accumulation".to_string()
    }
}

pub fn ggml_name(q: GgmlDType) -> &'static str {
    match q {
        GgmlDType::Q8_0 => "q8_0",
        GgmlDType::Q4_0 => "q4_0",
        GgmlDType::Q4K => "q4k",
        GgmlDType::Q6K => "q6k",
        GgmlDType::Q4_1 => "q4_1",
        GgmlDType::Q5_0 => "q5_0",
        GgmlDType::Q5_1 => "q5_1",
        GgmlDType::Q8_1 => "q8_1",
        GgmlDType::Q2K => "q2k",
        GgmlDType::Q3K => "q3k",
        GgmlDType::Q5K => "q5k",
        GgmlDType::Q8K => "q8k",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        GgmlDType::F32 => "f32",
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
