//! Decoders from GGUF files, as candle-transformers' quantized_* models run them: the file
//! checked (`weights::gguf`), its shapes and quantization types read from the header, its
//! tokenizer built from its metadata, the model loaded as stored (the file's GGML formats,
//! activations and KV cache in f32) or, as the fidelity reference, every tensor dequantized to
//! f32 and run by the same model code.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};
use candle_transformers::models::quantized_llama;
use tokenizers::Tokenizer;

use super::crate_run::{Forward, Offset};
use super::shapes::Shapes;
use crate::config::QuantFormat;
use crate::model::quant::ggml::format_of;
use crate::model::weights::gguf as checked;

type Build = fn(Content, &mut dyn ReadSeek, &Device) -> candle_core::Result<Box<dyn Forward>>;

pub trait ReadSeek: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ReadSeek for T {}

/// A GGUF architecture and the crate model that runs it.
pub struct GgufArch {
    /// `general.architecture` in the file.
    pub gguf: &'static str,
    /// The experiment file's `architecture` for it.
    pub architecture: &'static str,
    /// The longest context the crate's model is built for (its rotary tables).
    pub max_positions: usize,
    pub crate_model: &'static str,
    build: Build,
}

/// The GGUF architectures the runner loads. Others (qwen2: the crate's quantized_qwen2 model is
/// not Clone, so decode cannot be rewound; qwen3, phi3, gemma3, phi2, glm4: not yet tested here)
/// are refused by name.
pub const ARCHS: &[GgufArch] = &[GgufArch {
    gguf: "llama",
    architecture: "llama",
    max_positions: quantized_llama::MAX_SEQ_LEN,
    crate_model: "quantized_llama",
    build: |content, reader, device| {
        let mut reader = reader;
        Ok(Box::new(Offset {
            model: quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)?,
            forward: |m: &mut quantized_llama::ModelWeights, ids, offset| m.forward(ids, offset),
        }))
    },
}];

/// A checked GGUF decoder: what the runner knows before loading it.
#[derive(Debug, Clone)]
pub struct GgufModel {
    pub path: PathBuf,
    /// The metadata as a config.json (shapes, norm epsilon, rope base): what the runner's own
    /// decoder is built from.
    pub config_json: String,
    /// The file stores llama 3's rope frequency factors (`rope_freqs.weight`).
    pub rope_frequencies: bool,
    pub arch: &'static str,
    pub shapes: Shapes,
    /// Elements stored per GGML type, over the two-dimensional (weight) tensors.
    pub formats: BTreeMap<String, u64>,
    /// The quantized format holding most weight elements: what the file "is" (`q4_1`).
    pub main_format: Option<QuantFormat>,
    /// Bytes of tensor data as stored.
    pub weight_bytes: u64,
    pub file_bytes: u64,
    /// The output projection (output.weight, or the tied token_embd.weight) is stored in a
    /// quantized format.
    pub output_quantized: bool,
    /// `tokenizer.ggml.model` and the number of tokens it lists.
    pub tokenizer_model: Option<String>,
    pub token_count: Option<usize>,
}

fn arch(name: &str) -> Option<&'static GgufArch> {
    ARCHS.iter().find(|a| a.gguf == name)
}

fn read_content(path: &Path) -> Result<Content> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Content::read(&mut f).with_context(|| format!("{}: reading the GGUF header", path.display()))
}

fn md_u64(md: &std::collections::HashMap<String, Value>, key: &str) -> Option<u64> {
    let v = md.get(key)?;
    v.to_u64()
        .ok()
        .or_else(|| v.to_u32().ok().map(u64::from))
        .or_else(|| v.to_i32().ok().and_then(|x| u64::try_from(x).ok()))
}

impl GgufModel {
    /// Checks the file and reads what the runner needs; `declared` is the model section's
    /// architecture, which must be the file's.
    pub fn open(path: &Path, declared: &str) -> Result<Self> {
        let header = checked::check(path)?;
        let content = read_content(path)?;
        let md = &content.metadata;
        let file_arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .with_context(|| {
                format!(
                    "{}: no general.architecture in the metadata",
                    path.display()
                )
            })?;
        let Some(a) = arch(&file_arch) else {
            bail!(
                "{}: a {file_arch:?} GGUF; the runner loads GGUF files of architecture {} (through candle-transformers' quantized models)",
                path.display(),
                ARCHS.iter().map(|a| a.gguf).collect::<Vec<_>>().join(", ")
            );
        };
        if a.architecture != declared {
            bail!(
                "{}: the file holds a {file_arch:?} model but the model section says architecture = {declared:?}: set architecture = {:?}",
                path.display(),
                a.architecture
            );
        }
        let key = |k: &str| format!("{file_arch}.{k}");
        let need = |k: &str| -> Result<u64> {
            md_u64(md, &key(k))
                .with_context(|| format!("{}: no {} in the metadata", path.display(), key(k)))
        };
        let embd = header
            .tensors
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .with_context(|| format!("{}: no token_embd.weight tensor", path.display()))?;
        let mut json = serde_json::json!({
            "hidden_size": need("embedding_length")?,
            "num_hidden_layers": need("block_count")?,
            "num_attention_heads": need("attention.head_count")?,
            "num_key_value_heads": md_u64(md, &key("attention.head_count_kv")).unwrap_or(need("attention.head_count")?),
            "intermediate_size": need("feed_forward_length")?,
            "vocab_size": embd.dims.get(1).copied().unwrap_or(0),
            "max_position_embeddings": md_u64(md, &key("context_length")).unwrap_or(a.max_positions as u64).min(a.max_positions as u64),
            "tie_word_embeddings": !header.tensors.iter().any(|t| t.name == "output.weight"),
        });
        if let Some(k) = md_u64(md, &key("attention.key_length")) {
            json["head_dim"] = k.into();
        }
        // What the runner's own decoder reads besides the shapes (candle-transformers'
        // quantized_llama reads the same keys with the same defaults).
        let md_f64 = |k: &str| md.get(&key(k)).and_then(|v| v.to_f32().ok()).map(f64::from);
        json["rms_norm_eps"] = md_f64("attention.layer_norm_rms_epsilon")
            .unwrap_or(1e-5)
            .into();
        json["rope_theta"] = md_f64("rope.freq_base").unwrap_or(10_000.0).into();
        let shapes =
            Shapes::from_config_json(&json.to_string(), &format!("{}'s metadata", path.display()))?;
        let mut formats = BTreeMap::new();
        for t in header.tensors.iter().filter(|t| t.dims.len() == 2) {
            *formats.entry(checked::type_name(t.type_id)).or_insert(0u64) +=
                t.dims.iter().product::<u64>();
        }
        let main_format = header
            .tensors
            .iter()
            .filter(|t| t.dims.len() == 2)
            .filter_map(|t| {
                let q = checked::ggml_dtype(t.type_id)?;
                Some((format_of(q)?, t.dims.iter().product::<u64>()))
            })
            .fold(BTreeMap::<QuantFormat, u64>::new(), |mut m, (f, n)| {
                *m.entry(f).or_default() += n;
                m
            })
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(f, _)| f);
        let output = header
            .tensors
            .iter()
            .find(|t| t.name == "output.weight")
            .unwrap_or(embd);
        let output_quantized = checked::ggml_dtype(output.type_id)
            .and_then(format_of)
            .is_some();
        Ok(Self {
            config_json: json.to_string(),
            rope_frequencies: header.tensors.iter().any(|t| t.name == "rope_freqs.weight"),
            path: path.to_path_buf(),
            arch: a.gguf,
            output_quantized,
            shapes,
            formats,
            main_format,
            weight_bytes: header.tensors.iter().map(|t| t.bytes).sum(),
            file_bytes: header.file_bytes,
            tokenizer_model: md
                .get("tokenizer.ggml.model")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            token_count: md
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.len()),
        })
    }

    fn arch(&self) -> &'static GgufArch {
        arch(self.arch).expect("opened files have a known architecture")
    }

    pub fn crate_model(&self) -> &'static str {
        self.arch().crate_model
    }

    /// "q4_1: 106 M, q8_0: 28 M, f32: 0.0 M" elements of the weight tensors, largest first.
    pub fn formats_text(&self) -> String {
        let mut v: Vec<_> = self.formats.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .map(|(f, n)| format!("{f}: {:.1} M", **n as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The model as stored (`dequantize = false`), or with every tensor dequantized to f32.
    pub fn load(&self, device: &Device, dequantize: bool) -> Result<Box<dyn Forward>> {
        let content = read_content(&self.path)?;
        let build = self.arch().build;
        let what = || {
            format!(
                "{}: building candle-transformers' {}",
                self.path.display(),
                self.crate_model()
            )
        };
        if !dequantize {
            let mut f = std::fs::File::open(&self.path)?;
            return build(content, &mut f, device).with_context(what);
        }
        let mut f = std::fs::File::open(&self.path)?;
        let mut tensors = Vec::with_capacity(content.tensor_infos.len());
        for name in content.tensor_infos.keys() {
            let q = content.tensor(&mut f, name, &Device::Cpu)?;
            let t = q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
            tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32)?));
        }
        let metadata: Vec<(&str, &Value)> = content
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut buf = Cursor::new(Vec::new());
        gguf_file::write(&mut buf, &metadata, &refs)?;
        drop(tensors);
        buf.set_position(0);
        let content = Content::read(&mut buf)?;
        build(content, &mut buf, device).with_context(what)
    }

    /// The file's own tokenizer, from its metadata: byte-level BPE for `gpt2`-type vocabularies
    /// (SmolLM2, Llama 3, Qwen), the only type the runner builds; others are refused by name.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let content = read_content(&self.path)?;
        tokenizer_from_metadata(&content.metadata, &self.path.display().to_string())
    }
}

/// A byte-level BPE tokenizer (the `tokenizers` crate's, as Hugging Face's tokenizer.json of
/// these models builds it) from `tokenizer.ggml.*` metadata.
pub fn tokenizer_from_metadata(
    md: &std::collections::HashMap<String, Value>,
    what: &str,
) -> Result<Tokenizer> {
    use tokenizers::models::bpe::{Merges, Vocab, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{AddedToken, PreTokenizerWrapper};

    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .with_context(|| {
            format!("{what}: no tokenizer.ggml.model in the metadata (no tokenizer in the file)")
        })?;
    if model != "gpt2" {
        bail!(
            "{what}: its tokenizer is of type {model:?}; the runner builds gpt2-type (byte-level BPE) tokenizers from GGUF metadata only (SentencePiece \"llama\" vocabularies are not implemented)"
        );
    }
    let strings = |key: &str| -> Result<Vec<String>> {
        md.get(key)
            .with_context(|| format!("{what}: no {key} in the metadata"))?
            .to_vec()?
            .iter()
            .map(|v| Ok(v.to_string()?.clone()))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges: Merges = strings("tokenizer.ggml.merges")?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| format!("{what}: merge {m:?} is not two tokens"))
        })
        .collect::<Result<_>>()?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow::anyhow!("{what}: building its BPE tokenizer: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    // llama.cpp's "smollm" pre-tokenizer splits digits one by one before the GPT-2 pattern, as
    // SmolLM2's tokenizer.json does.
    if pre == "smollm" {
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ])));
    } else {
        tokenizer.with_pre_tokenizer(Some(byte_level));
    }
    tokenizer.with_decoder(Some(ByteLevel::default()));
    // Control tokens (type 3) are whole tokens, never split.
    if let Some(types) = md
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
    {
        let special: Vec<AddedToken> = types
            .iter()
            .zip(&tokens)
            .filter(|(t, _)| t.to_i32().is_ok_and(|t| t == 3))
            .map(|(_, tok)| AddedToken::from(tok.clone(), true))
            .collect();
        tokenizer
            .add_special_tokens(special)
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    }
    Ok(tokenizer)
}
