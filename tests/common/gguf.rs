//! GGUF files for tests: a tiny llama with a byte-level BPE vocabulary (written with candle's
//! own GGUF writer), and hand-made headers for the broken ones.
#![allow(dead_code)]

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// A 2-layer llama of width 64 in `format`, with `tokens` byte-level tokens listed in its
/// tokenizer and `vocab` rows in its embeddings (equal, for a well-formed file).
pub fn tiny_llama(path: &Path, format: GgmlDType, vocab: usize, tokens: usize) {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    let mut names: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    names.extend((names.len()..tokens).map(|i| format!("<extra_{i}>")));
    names.truncate(tokens);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(2)),
        ("llama.embedding_length", Value::U32(64)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.feed_forward_length", Value::U32(128)),
        ("llama.rope.dimension_count", Value::U32(16)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.context_length", Value::U32(512)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(names.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.merges", Value::Array(Vec::new())),
    ];
    let device = Device::Cpu;
    let mut seed = 0u64;
    let mut tensor = |shape: &[usize], quantize: bool| {
        seed += 1;
        let n: usize = shape.iter().product();
        // A fixed pseudo-random pattern: the test needs a model, not a good one.
        let values: Vec<f32> = (0..n)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 1000.0 - 0.5) * 0.1)
            .collect();
        let t = Tensor::from_vec(values, shape, &device).unwrap();
        let t = if shape.len() == 1 {
            t.ones_like().unwrap()
        } else {
            t
        };
        QTensor::quantize(&t, if quantize { format } else { GgmlDType::F32 }).unwrap()
    };
    let mut tensors = vec![
        ("token_embd.weight".to_string(), tensor(&[vocab, 64], true)),
        ("output_norm.weight".to_string(), tensor(&[64], false)),
        ("output.weight".to_string(), tensor(&[vocab, 64], true)),
    ];
    for b in 0..2 {
        for (name, shape) in [
            ("attn_q", vec![64, 64]),
            ("attn_k", vec![32, 64]),
            ("attn_v", vec![32, 64]),
            ("attn_output", vec![64, 64]),
            ("ffn_gate", vec![128, 64]),
            ("ffn_up", vec![128, 64]),
            ("ffn_down", vec![64, 128]),
        ] {
            tensors.push((format!("blk.{b}.{name}.weight"), tensor(&shape, true)));
        }
        for name in ["attn_norm", "ffn_norm"] {
            tensors.push((format!("blk.{b}.{name}.weight"), tensor(&[64], false)));
        }
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md, &ts).unwrap();
}

/// A GGUF header by hand: version 3, one string metadata entry, and these tensors (name,
/// dimensions innermost first, GGML type id), each given `bytes` of data space.
pub fn header(tensors: &[(&str, &[u64], u32)], bytes: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let s = |out: &mut Vec<u8>, text: &str| {
        out.extend((text.len() as u64).to_le_bytes());
        out.extend(text.as_bytes());
    };
    out.extend(0x4655_4747u32.to_le_bytes());
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend(1u64.to_le_bytes());
    s(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes());
    s(&mut out, "llama");
    let mut offset = 0u64;
    for (name, dims, ty) in tensors {
        s(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in *dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset += bytes;
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    out.extend(std::iter::repeat_n(0u8, (offset) as usize));
    out
}
