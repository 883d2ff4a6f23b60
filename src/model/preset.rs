//! Named architecture presets: the shapes of published checkpoints, so `weights = "random"` builds
//! the real architecture without downloading anything.

use serde::{Deserialize, Serialize};

use crate::config::Architecture;

/// Hyper-parameters of a DistilBERT-style encoder with a sequence-classification head.
/// Field names follow Hugging Face's DistilBertConfig (config.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub hidden_dim: usize,
    pub max_position_embeddings: usize,
    pub num_labels: usize,
    pub layer_norm_eps: f64,
    /// Standard deviation of the normal initialisation (Hugging Face's `initializer_range`).
    pub initializer_range: f64,
}

impl Preset {
    /// distilbert-base-uncased: 66M parameters, the model the original notebook profiled.
    pub const DISTILBERT_BASE_UNCASED: Preset = Preset {
        vocab_size: 30522,
        dim: 768,
        n_layers: 6,
        n_heads: 12,
        hidden_dim: 3072,
        max_position_embeddings: 512,
        num_labels: 2,
        layer_norm_eps: 1e-12,
        initializer_range: 0.02,
    };

    /// A tiny model of the same architecture, for fast tests and smoke runs.
    pub const DISTILBERT_TINY: Preset = Preset {
        vocab_size: 30522,
        dim: 64,
        n_layers: 2,
        n_heads: 4,
        hidden_dim: 256,
        max_position_embeddings: 512,
        num_labels: 2,
        layer_norm_eps: 1e-12,
        initializer_range: 0.02,
    };

    const DISTILBERT: [(&'static str, Preset); 2] = [
        ("distilbert-base-uncased", Self::DISTILBERT_BASE_UNCASED),
        ("distilbert-tiny", Self::DISTILBERT_TINY),
    ];

    pub fn lookup(arch: Architecture, name: &str) -> Option<Preset> {
        match arch {
            Architecture::Distilbert => Self::DISTILBERT
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| p.clone()),
        }
    }

    pub fn names(arch: Architecture) -> Vec<&'static str> {
        match arch {
            Architecture::Distilbert => Self::DISTILBERT.iter().map(|(n, _)| *n).collect(),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Parameter count, for the report.
    pub fn parameters(&self) -> usize {
        let embeddings = (self.vocab_size + self.max_position_embeddings) * self.dim + 2 * self.dim;
        let attention = 4 * (self.dim * self.dim + self.dim) + 2 * self.dim;
        let ffn = 2 * self.dim * self.hidden_dim + self.hidden_dim + self.dim + 2 * self.dim;
        let head = self.dim * self.dim + self.dim + self.dim * self.num_labels + self.num_labels;
        embeddings + self.n_layers * (attention + ffn) + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distilbert_base_has_the_published_parameter_count() {
        // Hugging Face reports 66,955,010 parameters for DistilBertForSequenceClassification.
        assert_eq!(Preset::DISTILBERT_BASE_UNCASED.parameters(), 66_955_010);
    }

    #[test]
    fn lookup_knows_the_presets_by_name() {
        assert!(Preset::lookup(Architecture::Distilbert, "distilbert-base-uncased").is_some());
        assert!(Preset::lookup(Architecture::Distilbert, "bert-base").is_none());
    }
}
