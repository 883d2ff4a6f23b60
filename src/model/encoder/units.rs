//! The units the per-layer profiler runs alone: layers, and inside each block its components.

use candle_core::Tensor;

use crate::ops::eight_bit::Packed8;

/// What flows between the encoder's layers and between a block's components: the values in the
/// float dtype and, when the layer norm that wrote them also quantized them for the W8A8 layer that
/// reads them next (src/ops/eight_bit/norm_quantize.rs), those bytes, which that layer reads instead of
/// quantizing the values in a pass of its own.
#[derive(Clone)]
pub struct Hidden {
    pub values: Tensor,
    pub packed: Option<Packed8>,
}

impl From<Tensor> for Hidden {
    fn from(values: Tensor) -> Self {
        Self {
            values,
            packed: None,
        }
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

/// A unit with the real inputs it received in one forward pass (the packed bytes too, so a unit
/// alone runs what it runs in the whole pass).
pub struct CapturedUnit {
    pub unit: Unit,
    pub input: Hidden,
    /// The mask (attention, blocks), the residual (layer norms), or nothing.
    pub other: Option<Tensor>,
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
    pub(super) fn uses_mask(&self) -> bool {
        matches!(self, Layer::Block(_) | Layer::Pooler(Pooling::Mean))
    }
}

/// Where linear layers sit, at the granularity the `quantize` axis selects them: a block's
/// attention projections (query, key, value, output), a block's FFN (lin1, lin2), the pooler or
/// pre-classifier, the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearSite {
    Attention(usize),
    Ffn(usize),
    Pooler,
    Classifier,
}

impl LinearSite {
    /// Named as the profiler names the unit that holds it (`transformer_block_2.ffn`,
    /// `pre_classifier`), so a record's list of quantized layers reads against the profile.
    pub fn name(&self, pooling: Pooling) -> String {
        match self {
            LinearSite::Attention(b) => Unit::Component(*b, Component::Attention).name(),
            LinearSite::Ffn(b) => Unit::Component(*b, Component::Ffn).name(),
            LinearSite::Pooler => pooling.name().into(),
            LinearSite::Classifier => Layer::Classifier.name(),
        }
    }

    /// The sites inside a top-level layer (none for the embeddings or mean pooling).
    pub fn of_layer(layer: Layer) -> Vec<LinearSite> {
        match layer {
            Layer::Embeddings | Layer::Pooler(Pooling::Mean) => Vec::new(),
            Layer::Block(b) => vec![LinearSite::Attention(b), LinearSite::Ffn(b)],
            Layer::Pooler(_) => vec![LinearSite::Pooler],
            Layer::Classifier => vec![LinearSite::Classifier],
        }
    }
}
