//! Datasets and tokenization into fixed-shape batches.
//!
//! Tokenization uses the `tokenizers` crate (the reference implementation of Hugging Face's
//! tokenizers), so ids match what the model was trained with; batches cycle through the dataset and
//! every reuse of a sample (wraparound) is counted and reported.

mod prompts;

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PaddingParams, PaddingStrategy, PostProcessor, Tokenizer, TruncationParams};

use crate::config::DatasetFormat;
use crate::files;
pub use prompts::{prompts, PromptSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    /// 1 = positive, 0 = negative.
    pub label: u32,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub examples: Vec<Example>,
    /// Lines left out because their label is undefined (a rating of exactly zero).
    pub dropped_neutral: usize,
}

/// Reads a dataset (a regular file of at most [`limit::DATASET`]). `limit` keeps the first N
/// usable examples.
pub fn load_dataset(path: &Path, format: DatasetFormat, limit: Option<usize>) -> Result<Dataset> {
    let text = files::read_text(path, files::limit::DATASET, "dataset")?;
    let mut examples = Vec::new();
    let mut dropped_neutral = 0;
    match format {
        DatasetFormat::RatingTsv => {
            for (i, line) in text.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                let mut fields = line.splitn(3, '\t');
                let (_id, rating, sentence) = match (fields.next(), fields.next(), fields.next()) {
                    (Some(id), Some(r), Some(t)) => (id, r, t),
                    _ => bail!(
                        "{}:{}: expected `id<TAB>rating<TAB>text` (dataset.format = \"rating_tsv\")",
                        path.display(),
                        i + 1
                    ),
                };
                let rating: f64 = rating.trim().parse().with_context(|| {
                    format!(
                        "{}:{}: rating {rating:?} is not a number",
                        path.display(),
                        i + 1
                    )
                })?;
                // NaN compares false with everything (it would be labelled negative), inf is no
                // rating a sentence gets: both are a broken line, not data.
                if !rating.is_finite() {
                    bail!(
                        "{}:{}: rating {rating} is not a finite number: fix or remove that line",
                        path.display(),
                        i + 1
                    );
                }
                if rating == 0.0 {
                    dropped_neutral += 1;
                    continue;
                }
                examples.push(Example {
                    text: sentence.to_string(),
                    label: u32::from(rating > 0.0),
                });
                if limit.is_some_and(|l| examples.len() >= l) {
                    break;
                }
            }
        }
    }
    if examples.is_empty() {
        bail!("dataset {} holds no usable example", path.display());
    }
    Ok(Dataset {
        examples,
        dropped_neutral,
    })
}

/// A tokenizer padding and truncating to exactly `seq_len` tokens.
/// `vocab.txt` gets BERT's uncased rules (lower-case, strip accents, WordPiece, [CLS] ... [SEP]);
/// a `tokenizer.json` is used as saved, with padding and truncation set to `seq_len`. Either is
/// read as a regular file of at most [`limit::TOKENIZER`].
pub fn build_tokenizer(path: &Path, seq_len: usize) -> Result<Tokenizer> {
    let context = || format!("loading tokenizer {}", path.display());
    let bytes = files::read(path, files::limit::TOKENIZER, "tokenizer")?;
    let mut tokenizer = if path.extension().is_some_and(|e| e == "json") {
        Tokenizer::from_bytes(&bytes)
            .map_err(anyhow::Error::msg)
            .with_context(context)?
    } else {
        let vocab = WordPiece::read_bytes(&bytes)
            .map_err(anyhow::Error::msg)
            .with_context(context)?;
        let wordpiece = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .map_err(anyhow::Error::msg)
            .with_context(context)?;
        let mut t = Tokenizer::new(wordpiece);
        let id = |token: &str| {
            t.token_to_id(token)
                .with_context(|| format!("{}: the vocabulary has no {token}", path.display()))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        t.with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
            .map_err(anyhow::Error::msg)?;
        t.with_pre_tokenizer(Some(BertPreTokenizer));
        t.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        t
    };
    let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: seq_len,
            ..Default::default()
        }))
        .map_err(anyhow::Error::msg)?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(seq_len),
        pad_id,
        pad_token: "[PAD]".into(),
        ..Default::default()
    }));
    Ok(tokenizer)
}

/// Every example tokenized to `seq_len`, row-major.
#[derive(Debug, Clone)]
pub struct TokenizedSet {
    pub seq_len: usize,
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub labels: Vec<u32>,
    /// Examples cut short because they have more than `seq_len` tokens.
    pub truncated: usize,
    /// Real (non-padding) tokens over all examples.
    pub real_tokens: usize,
}

impl TokenizedSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Token ids and attention mask of the given examples, as one (len, seq_len) batch.
    pub fn batch(
        &self,
        indices: impl ExactSizeIterator<Item = usize>,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let (s, rows) = (self.seq_len, indices.len());
        let mut ids = Vec::with_capacity(rows * s);
        let mut mask = Vec::with_capacity(rows * s);
        for i in indices {
            ids.extend_from_slice(&self.ids[i * s..(i + 1) * s]);
            mask.extend_from_slice(&self.attention_mask[i * s..(i + 1) * s]);
        }
        Ok((
            Tensor::from_vec(ids, (rows, s), device)?,
            Tensor::from_vec(mask, (rows, s), device)?,
        ))
    }
}

/// The largest id the tokenizer can give (its vocabulary and added tokens): what must index the
/// model's embeddings. (Its count of tokens is not: ids may have gaps.)
pub fn largest_token_id(tokenizer: &Tokenizer) -> Option<u32> {
    tokenizer.get_vocab(true).into_values().max()
}

pub fn tokenize(tokenizer: &Tokenizer, dataset: &Dataset, seq_len: usize) -> Result<TokenizedSet> {
    // Checked before encoding: the tokenizers crate computes the text's room as seq_len minus its
    // special tokens, which underflows (a panic, or a wrapped length) when they do not fit.
    let special = tokenizer
        .get_post_processor()
        .map_or(0, |p| p.added_tokens(false));
    anyhow::ensure!(
        special <= seq_len,
        "its post-processor adds {special} special tokens to every example where seq_len = {seq_len} asks for exactly {seq_len} tokens in all: raise seq_len to at least {special}, or use a tokenizer whose template fits"
    );
    let texts: Vec<&str> = dataset.examples.iter().map(|e| e.text.as_str()).collect();
    let encodings = tokenizer
        .encode_batch(texts, true)
        .map_err(anyhow::Error::msg)
        .context("tokenizing the dataset")?;
    let mut set = TokenizedSet {
        seq_len,
        ids: Vec::with_capacity(encodings.len() * seq_len),
        attention_mask: Vec::with_capacity(encodings.len() * seq_len),
        labels: dataset.examples.iter().map(|e| e.label).collect(),
        truncated: 0,
        real_tokens: 0,
    };
    for (i, enc) in encodings.iter().enumerate() {
        anyhow::ensure!(
            enc.get_ids().len() == seq_len,
            "it gives {} tokens for example {} where seq_len = {seq_len} asks for exactly {seq_len} (padded and truncated to it): its post-processor adds more special tokens than fit; raise seq_len, or use a tokenizer whose template fits",
            enc.get_ids().len(),
            i + 1
        );
        set.ids.extend_from_slice(enc.get_ids());
        set.attention_mask
            .extend_from_slice(enc.get_attention_mask());
        set.real_tokens += enc.get_attention_mask().iter().filter(|&&m| m == 1).count();
        if !enc.get_overflowing().is_empty() {
            set.truncated += 1;
        }
    }
    Ok(set)
}

/// How much of the dataset a cell consumed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct DatasetUsage {
    pub examples: usize,
    pub samples_served: u64,
    /// Times the batches started over from the first example (0 = every sample seen at most once).
    pub wraparounds: u64,
}

/// Batches resident on the device, served in a cycle. Batch k holds examples k*b .. k*b+b-1
/// (indices modulo the dataset size), so the last batch wraps around to the start if needed.
pub struct BatchCycle {
    batches: Vec<(Tensor, Tensor)>,
    batch_size: usize,
    examples: usize,
    next: usize,
    served: u64,
}

impl BatchCycle {
    pub fn new(set: &TokenizedSet, batch_size: usize, device: &Device) -> Result<Self> {
        Self::with_at_most(set, batch_size, device, usize::MAX)
    }

    /// Like [`Self::new`], uploading only the first `max_batches` batches (a cell that reuses one
    /// captured batch needs no more on the device).
    pub fn with_at_most(
        set: &TokenizedSet,
        batch_size: usize,
        device: &Device,
        max_batches: usize,
    ) -> Result<Self> {
        let n = set.len();
        let count = n.div_ceil(batch_size).min(max_batches.max(1));
        let batches = (0..count)
            .map(|k| set.batch((0..batch_size).map(|j| (k * batch_size + j) % n), device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            batches,
            batch_size,
            examples: n,
            next: 0,
            served: 0,
        })
    }

    /// The first batch, without advancing (a CUDA graph is captured on a batch of the cell's shape).
    pub fn first(&self) -> &(Tensor, Tensor) {
        &self.batches[0]
    }

    /// The next (input_ids, attention_mask) batch.
    pub fn next_batch(&mut self) -> &(Tensor, Tensor) {
        let i = self.next;
        self.next = (self.next + 1) % self.batches.len();
        self.served += self.batch_size as u64;
        &self.batches[i]
    }

    pub fn usage(&self) -> DatasetUsage {
        let n = self.examples as u64;
        DatasetUsage {
            examples: self.examples,
            samples_served: self.served,
            wraparounds: self.served.saturating_sub(1) / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_path(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    #[test]
    fn rotten_tomatoes_labels_are_the_sign_of_the_rating_and_zeros_are_dropped() {
        let d = load_dataset(
            &repo_path("datasets/rotten_tomatoes_sentences.tsv"),
            DatasetFormat::RatingTsv,
            None,
        )
        .unwrap();
        // PROVENANCE: 5,242 above zero, 5,326 below, 37 exactly zero.
        assert_eq!(d.examples.iter().filter(|e| e.label == 1).count(), 5242);
        assert_eq!(d.examples.iter().filter(|e| e.label == 0).count(), 5326);
        assert_eq!(d.dropped_neutral, 37);
        assert!(!d.examples[0].text.ends_with('\r'));
    }

    #[test]
    fn vocab_tokenizer_matches_bert_uncased_ids() {
        let t = build_tokenizer(&repo_path("datasets/bert-base-uncased-vocab.txt"), 8).unwrap();
        let enc = t.encode("Hello, World!", true).unwrap();
        // bert-base-uncased: [CLS]=101 hello=7592 ,=1010 world=2088 !=999 [SEP]=102, then [PAD]=0.
        assert_eq!(enc.get_ids(), &[101, 7592, 1010, 2088, 999, 102, 0, 0]);
        assert_eq!(enc.get_attention_mask(), &[1, 1, 1, 1, 1, 1, 0, 0]);
        let long = t
            .encode("one two three four five six seven eight", true)
            .unwrap();
        assert_eq!(long.get_ids().len(), 8);
        assert_eq!(long.get_ids()[7], 102, "truncation keeps the final [SEP]");
    }

    #[test]
    fn batch_cycle_counts_wraparounds() {
        let set = TokenizedSet {
            seq_len: 2,
            ids: (0..10).collect(),
            attention_mask: vec![1; 10],
            labels: vec![0; 5],
            truncated: 0,
            real_tokens: 10,
        };
        let mut cycle = BatchCycle::new(&set, 2, &Device::Cpu).unwrap();
        // 5 examples in batches of 2: [0,1] [2,3] [4,0] then again.
        let third: Vec<Vec<u32>> = {
            cycle.next_batch();
            cycle.next_batch();
            cycle.next_batch().0.to_vec2().unwrap()
        };
        assert_eq!(third, vec![vec![8, 9], vec![0, 1]]);
        assert_eq!(cycle.usage().samples_served, 6);
        assert_eq!(cycle.usage().wraparounds, 1);
        let mut fresh = BatchCycle::new(&set, 5, &Device::Cpu).unwrap();
        fresh.next_batch();
        assert_eq!(fresh.usage().wraparounds, 0, "exactly one pass is no reuse");
    }
}
