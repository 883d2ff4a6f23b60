//! `[models.NAME]`: an architecture, its preset or weights, the implementation that runs it, and
//! its head (the classifier or a linear probe).

use serde::{Deserialize, Serialize};

use crate::config::Preset;

/// The encoder architectures the runner implements itself (BERT-family classifiers). Decoder
/// architectures are not listed here: every candle-transformers decoder is one entry of
/// `model::decoder::zoo`, and a model section names it as a string that `runner plan` looks up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    Distilbert,
    Bert,
}

impl Architecture {
    pub const ENCODERS: [(&'static str, Architecture); 2] = [
        ("distilbert", Architecture::Distilbert),
        ("bert", Architecture::Bert),
    ];

    pub fn is_distilbert(&self) -> bool {
        *self == Architecture::Distilbert
    }

    /// The encoder architecture of this name; `None` for anything else (a decoder's name, or a
    /// typo that the decoder zoo's lookup then answers with "did you mean").
    pub fn parse_encoder(name: &str) -> Option<Architecture> {
        Self::ENCODERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `distilbert` or `bert` (the runner's encoders), or a decoder architecture of
    /// candle-transformers (`llama`, `qwen2`, `mistral`, ...; `runner plan` lists them).
    pub architecture: String,
    /// A named preset: the shapes of a published checkpoint (`distilbert-base-uncased`,
    /// `smollm2-135m`, ...). Encoders always name one; decoders with weights from a folder or a
    /// .gguf file take the shapes from there (a preset given beside them must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `random` (seeded, the preset's architecture), a local Hugging Face folder holding
    /// `config.json` and `*.safetensors` (relative to the experiment file's folder), or, for
    /// decoders, a `.gguf` file (its tokenizer and quantization types are used).
    #[serde(default = "default_weights")]
    pub weights: String,
    /// What classifies: the checkpoint's own head, or a linear probe the runner trains on the
    /// fp32 model's pooled outputs (and then reports accuracy at every precision).
    // Defaults are left out of the resolved config that reports print, as before probes existed.
    #[serde(default, skip_serializing_if = "HeadKind::is_checkpoint")]
    pub head: HeadKind,
    /// Settings of the linear probe (`head = "probe"`).
    #[serde(default, skip_serializing_if = "ProbeSection::is_default")]
    pub probe: ProbeSection,
    /// Decoders: who runs the model. `crate` (the default): candle-transformers' model as the
    /// crate runs it (eager, its KV cache grown by `Tensor::cat`); `own`: the runner's own
    /// Llama-family decoder as deployed (static KV cache, device-held position, precisions
    /// quantized at load), for llama, mistral, qwen2 and qwen3.
    #[serde(default, skip_serializing_if = "Implementation::is_crate")]
    pub implementation: Implementation,
    /// The runner's own decoder on CUDA: `plain` (the default: candle's kernels, ~93 a layer
    /// per decode step) or `fused` (the runner's decode kernels, src/ops/kernels/decode.cu:
    /// residual + RMSNorm, rotary + KV write, split-K attention, SwiGLU, one Q|K|V and one
    /// gate|up GEMM; 10 launches a layer) or `gemv` (the fused path with the runner's own decode
    /// GEMV, src/ops/kernels/gemv.cu: the RMSNorms folded into the GEMVs' prologues, the
    /// residual adds into their epilogues, the step's activations preallocated; 7 launches a
    /// layer, batch 1..8) or `gemv-pdl` (`gemv` with Programmatic Dependent Launch: each of
    /// the step's own kernels may start during its predecessor's tail, the GEMVs prefetching their
    /// weights before they wait) or `gemv-bulk` (`gemv-pdl` with the GEMVs' weights streamed by
    /// TMA bulk copies into a ring of stages in shared memory) or `gemv-fold` (`gemv-pdl` in 5
    /// launches a layer: rotary + KV write folded into the attention, SwiGLU into the gate|up
    /// GEMV, the RMSNorm GEMVs without a block prologue). Prefill stays plain. The cell id and every record say
    /// which ran (`implementation.decode_kernels`). CUDA only: a CPU cell with `fused` is an
    /// error, not a fallback.
    #[serde(default, skip_serializing_if = "DecodeKernels::is_plain")]
    pub decode_kernels: DecodeKernels,
    /// The runner's own decoder: the prefill's attention. `auto` (the default): `flash` where the
    /// cell runs bf16 or f16 on CUDA, `plain` elsewhere (f32, the CPU, a build without CUDA, a
    /// head_dim without a kernel), resolved per cell before anything is measured. `plain`:
    /// candle's f32 matmuls over K and V repeated for every query head, a materialized score
    /// matrix, mask and softmax. `flash` (src/ops/kernels/prefill.cu): one tensor-core kernel over
    /// the KV cache, bf16/f16, CUDA only (an f32 model runs the plain path and its record says
    /// so). The cell id, the cell in every record and `implementation.prefill_attention` say which
    /// ran, never `auto`.
    #[serde(default, skip_serializing_if = "PrefillAttention::is_auto")]
    pub prefill_attention: PrefillAttention,
    /// Decoders with random weights: a shallow cut, the preset's first N layers (its widths,
    /// embeddings and head as published), so that a per-layer profile of a real shape fits a
    /// short GPU call. The config the cell is built from (and so its id) says how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<i64>,
}

/// `models.NAME.decode_kernels`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DecodeKernels {
    #[default]
    Plain,
    Fused,
    Gemv,
    /// `gemv` with Programmatic Dependent Launch between the step's own kernels.
    #[serde(rename = "gemv-pdl")]
    GemvPdl,
    /// `gemv-pdl` with the GEMVs' weights streamed by TMA bulk copies (cp.async.bulk).
    #[serde(rename = "gemv-bulk")]
    GemvBulk,
    /// `gemv-pdl` with 5 launches a layer: rope_kv_write folded into the attention, SwiGLU into
    /// the gate|up GEMV's epilogue, the RMSNorm GEMVs without their block prologue.
    #[serde(rename = "gemv-fold")]
    GemvFold,
    /// `gemv-fold` with the attention's splits merged in a thread-block cluster, o and down on
    /// gemv_long (a lane's loads batched): the frugal batch-1 way.
    #[serde(rename = "gemv-cluster")]
    GemvCluster,
    /// `gemv-cluster` with the final RMSNorm and the lm_head as one GEMV (a lane's loads
    /// batched) and the step's tail after it (the f32 logits, the greedy pick, the position's
    /// advance) in one launch: the fastest batch-1 way, at a few per cent more power.
    #[serde(rename = "gemv-lean")]
    GemvLean,
}

impl DecodeKernels {
    /// Most decode batch rows `gemv` serves (its kernels keep a row's sums in registers).
    pub const GEMV_MAX_BATCH: usize = 8;

    pub fn is_plain(&self) -> bool {
        *self == DecodeKernels::Plain
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Fused => "fused",
            Self::Gemv => "gemv",
            Self::GemvPdl => "gemv-pdl",
            Self::GemvBulk => "gemv-bulk",
            Self::GemvFold => "gemv-fold",
            Self::GemvCluster => "gemv-cluster",
            Self::GemvLean => "gemv-lean",
        }
    }

    /// `gemv`, `gemv-pdl`, `gemv-bulk`, `gemv-fold`, `gemv-cluster` or `gemv-lean`: the decode
    /// GEMV's step (batches 1..=8, preallocated activations).
    pub fn is_gemv(self) -> bool {
        matches!(
            self,
            Self::Gemv
                | Self::GemvPdl
                | Self::GemvBulk
                | Self::GemvFold
                | Self::GemvCluster
                | Self::GemvLean
        )
    }

    /// `gemv-pdl`, `gemv-bulk`, `gemv-fold`, `gemv-cluster` or `gemv-lean`: the step's kernels
    /// launched with Programmatic Dependent Launch.
    pub fn is_programmatic(self) -> bool {
        matches!(
            self,
            Self::GemvPdl | Self::GemvBulk | Self::GemvFold | Self::GemvCluster | Self::GemvLean
        )
    }
}

/// `models.NAME.prefill_attention`: as written; a cell holds it resolved (`plain` or `flash`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum PrefillAttention {
    /// Flash where the cell runs bf16/f16 on CUDA, plain elsewhere.
    #[default]
    Auto,
    Plain,
    Flash,
}

impl PrefillAttention {
    pub fn is_auto(&self) -> bool {
        *self == PrefillAttention::Auto
    }

    pub fn is_plain(&self) -> bool {
        *self == PrefillAttention::Plain
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Plain => "plain",
            Self::Flash => "flash",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    #[default]
    Crate,
    Own,
}

impl Implementation {
    pub fn is_crate(&self) -> bool {
        *self == Implementation::Crate
    }
}

impl ModelSection {
    /// The encoder architecture, for sections that declare one.
    pub fn encoder(&self) -> Option<Architecture> {
        Architecture::parse_encoder(&self.architecture)
    }

    /// The encoder preset this section names, when it declares an encoder and a known preset.
    pub fn encoder_preset(&self) -> Option<Preset> {
        Preset::lookup(self.encoder()?, self.preset.as_deref()?)
    }
}

fn default_weights() -> String {
    "random".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// DistilBERT: pre-classifier + ReLU + classifier on [CLS]; BERT: pooler (dense + tanh on
    /// [CLS]) + classifier. Random weights, or the folder's trained head.
    #[default]
    Checkpoint,
    /// Masked mean pooling + a logistic-regression head trained by the runner (sentence-embedding
    /// models such as all-MiniLM-L6-v2 have no classifier of their own).
    Probe,
}

/// A linear probe: a seeded split of the labelled dataset into `train_examples` and
/// `test_examples`, logistic regression on the fp32 model's centred, scaled pooled outputs (full-batch
/// gradient descent, L2 penalty), then accuracy on the test split in every cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    #[serde(default = "default_probe_train")]
    pub train_examples: i64,
    #[serde(default = "default_probe_test")]
    pub test_examples: i64,
    #[serde(default = "default_probe_l2")]
    pub l2: f64,
    #[serde(default = "default_probe_steps")]
    pub steps: i64,
}

impl HeadKind {
    fn is_checkpoint(&self) -> bool {
        *self == HeadKind::Checkpoint
    }
}

impl ProbeSection {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for ProbeSection {
    fn default() -> Self {
        Self {
            train_examples: default_probe_train(),
            test_examples: default_probe_test(),
            l2: default_probe_l2(),
            steps: default_probe_steps(),
        }
    }
}

fn default_probe_train() -> i64 {
    4000
}
fn default_probe_test() -> i64 {
    2000
}
/// Chosen once on all-MiniLM-L6-v2 (seq 32, 2,000/1,000 split, seed 0): test accuracy 73.2 % at
/// 1e-3, 74.8 % at 1e-2; 500 steps had converged (2,000 gave the same).
fn default_probe_l2() -> f64 {
    1e-2
}
fn default_probe_steps() -> i64 {
    500
}
