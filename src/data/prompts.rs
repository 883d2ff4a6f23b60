//! A decoder's prompts: the dataset's texts, each encoded with the model's own tokenizer (no
//! special tokens), joined into one token stream and cut into prompts of `prompt_len` tokens.
//! Where the dataset runs out the stream starts over at its first text: each start-over is a
//! wraparound, reported in the record. The same stream gives perplexity's text.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::Dataset;

/// Prompts of one length for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptSet {
    pub prompt_len: usize,
    /// `count` prompts of `prompt_len` token ids each.
    pub prompts: Vec<Vec<u32>>,
    /// Texts of the dataset the stream read (each counted once).
    pub texts: usize,
    /// Times the stream started over from the dataset's first text.
    pub wraparounds: u64,
    /// The tokenizer that made them, for the record.
    pub tokenizer: String,
    /// The largest id any prompt holds (checked against the model's vocabulary).
    pub max_id: u32,
}

/// Reads tokens from the dataset's texts in order, starting over at the end.
struct Stream<'a> {
    tokenizer: &'a Tokenizer,
    dataset: &'a Dataset,
    next_text: usize,
    buffer: std::collections::VecDeque<u32>,
    texts: usize,
    wraparounds: u64,
}

impl Stream<'_> {
    fn take(&mut self, n: usize) -> Result<Vec<u32>> {
        let mut empty_texts = 0;
        while self.buffer.len() < n {
            if self.next_text == self.dataset.examples.len() {
                self.next_text = 0;
                self.wraparounds += 1;
            }
            let text = &self.dataset.examples[self.next_text].text;
            self.next_text += 1;
            if self.wraparounds == 0 {
                self.texts += 1;
            }
            let encoding = self
                .tokenizer
                .encode(format!("{text}\n"), false)
                .map_err(|e| anyhow::anyhow!("tokenizing the dataset: {e}"))?;
            if encoding.get_ids().is_empty() {
                empty_texts += 1;
                if empty_texts > self.dataset.examples.len() {
                    bail!("the tokenizer turns every text of the dataset into no tokens");
                }
            }
            self.buffer.extend(encoding.get_ids());
        }
        Ok(self.buffer.drain(..n).collect())
    }
}

/// `count` prompts of `prompt_len` tokens (a decoder cell's batch, or the most any cell needs).
pub fn prompts(
    tokenizer: &Tokenizer,
    described: &str,
    dataset: &Dataset,
    prompt_len: usize,
    count: usize,
) -> Result<PromptSet> {
    if dataset.examples.is_empty() {
        bail!("the dataset has no texts to make prompts from");
    }
    let mut tokenizer = tokenizer.clone();
    // The dataset's tokenizer may pad and truncate to an encoder's length: not for a stream.
    tokenizer
        .with_truncation(None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer.with_padding(None);
    let mut stream = Stream {
        tokenizer: &tokenizer,
        dataset,
        next_text: 0,
        buffer: Default::default(),
        texts: 0,
        wraparounds: 0,
    };
    let prompts = (0..count)
        .map(|_| stream.take(prompt_len))
        .collect::<Result<Vec<_>>>()
        .context("making prompts")?;
    let max_id = prompts.iter().flatten().copied().max().unwrap_or(0);
    Ok(PromptSet {
        prompt_len,
        prompts,
        texts: stream.texts,
        wraparounds: stream.wraparounds,
        tokenizer: described.to_string(),
        max_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Example;

    #[test]
    fn prompts_cut_one_stream_and_count_each_start_over() {
        let vocab = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("datasets/bert-base-uncased-vocab.txt");
        let tokenizer = crate::data::build_tokenizer(&vocab, 16).unwrap();
        let dataset = Dataset {
            examples: vec![
                Example {
                    text: "a good film".into(),
                    label: 1,
                },
                Example {
                    text: "a bad one".into(),
                    label: 0,
                },
            ],
            dropped_neutral: 0,
        };
        let set = prompts(&tokenizer, "bert vocab", &dataset, 5, 3).unwrap();
        assert_eq!(set.prompts.len(), 3);
        assert!(set.prompts.iter().all(|p| p.len() == 5));
        // 2 texts of 3 tokens each (no [CLS]/[SEP], no padding): 15 tokens need 5 texts.
        assert_eq!(set.texts, 2);
        assert_eq!(set.wraparounds, 2);
        assert_eq!(set.prompts[0][..3], set.prompts[1][1..4]);
    }
}
