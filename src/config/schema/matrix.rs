//! `[matrix]`: the axes a run varies, their `include` and `exclude` entries, and the scopes a
//! cell may measure.

use serde::{Deserialize, Serialize};

use crate::config::{LayerMethod, Precision, QuantizeSelection};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole forward pass.
    Model,
    /// Each layer alone (and each transformer block's components), on its real captured input.
    Layers,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Model => "model",
            Scope::Layers => "layers",
        }
    }
}

/// Axes of the matrix plus GitHub-Actions-style `include` and `exclude`.
/// Integers are read signed so that a negative value gets our own message, not serde's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MatrixSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Vec<Precision>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<Vec<i64>>,
    /// Decoders: tokens per prompt (the prefill's length); encoders ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_len: Option<Vec<i64>>,
    /// Decoders: greedy tokens generated per prompt after the prefill (EOS ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tokens: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<Scope>>,
    /// Which linear layers quantized precisions quantize (`all` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<Vec<QuantizeSelection>>,
    /// How `layers` cells attribute energy to layers (`isolated` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_method: Option<Vec<LayerMethod>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<MatrixEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<MatrixEntry>,
    /// Order in which the axes appear in the experiment file (the Cartesian product's key order).
    /// Not a key users write: recovered from the file, since figment's maps are sorted.
    #[serde(skip)]
    pub axis_order: Vec<String>,
}

/// A partial cell: an `include` or `exclude` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MatrixEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_len: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<QuantizeSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_method: Option<LayerMethod>,
}

/// The axis names, in the order used when an axis is absent from the file.
pub const AXES: [&str; 9] = [
    "model",
    "precision",
    "batch_size",
    "seq_len",
    "prompt_len",
    "new_tokens",
    "scope",
    "quantize",
    "layer_method",
];
