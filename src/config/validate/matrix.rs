//! `[matrix]`: every axis's values, include/exclude entries, and the quantize selections
//! against the models they may be paired with.

use std::collections::BTreeMap;

use super::{MAX_BATCH_SIZE, MAX_TOKENS};
use crate::config::suggest::key_path;
use crate::config::{ExperimentConfig, HeadKind, QuantizeSelection};

/// `max_positions`: each encoder's position embeddings, by model name (from `models::check`).
pub(super) fn check(
    c: &ExperimentConfig,
    max_positions: &BTreeMap<String, usize>,
    bad: &mut impl FnMut(&[&str], String),
) {
    let m = &c.matrix;
    let declared = |name: &str| c.models.contains_key(name);
    let known_models = c.models.keys().cloned().collect::<Vec<_>>().join(", ");
    let smallest_max_pos = max_positions.values().copied().min().unwrap_or(usize::MAX);
    for (i, name) in m.model.iter().flatten().enumerate() {
        if !declared(name) {
            bad(
                &["matrix", "model", &i.to_string()],
                format!(
                    "matrix.model[{i}] = {name:?} is not declared; declared models: {known_models}"
                ),
            );
        }
    }
    for (i, &b) in m.batch_size.iter().flatten().enumerate() {
        if b < 1 {
            bad(
                &["matrix", "batch_size", &i.to_string()],
                format!("batch_size must be >= 1 (matrix.batch_size[{i}] = {b})"),
            );
        } else if b > MAX_BATCH_SIZE {
            bad(
                &["matrix", "batch_size", &i.to_string()],
                too_large_batch(&format!("matrix.batch_size[{i}]"), b),
            );
        }
    }
    for (i, &s) in m.seq_len.iter().flatten().enumerate() {
        check_seq_len(
            bad,
            &["matrix", "seq_len", &i.to_string()],
            s,
            smallest_max_pos,
        );
    }
    for (axis, values) in [("prompt_len", &m.prompt_len), ("new_tokens", &m.new_tokens)] {
        for (i, &v) in values.iter().flatten().enumerate() {
            let at = ["matrix", axis, &i.to_string()];
            check_tokens(bad, &at, axis, v);
        }
    }
    for (list, entries) in [("include", &m.include), ("exclude", &m.exclude)] {
        for (i, e) in entries.iter().enumerate() {
            for (axis, value) in [("prompt_len", e.prompt_len), ("new_tokens", e.new_tokens)] {
                if let Some(v) = value {
                    let at = ["matrix", list, &i.to_string(), axis];
                    check_tokens(bad, &at, axis, v);
                }
            }
            if let Some(name) = &e.model {
                if !declared(name) {
                    bad(&["matrix", list, &i.to_string(), "model"], format!(
                        "matrix.{list}[{i}].model = {name:?} is not declared; declared models: {known_models}"
                    ));
                }
            }
            if let Some(b) = e.batch_size {
                if b < 1 {
                    bad(
                        &["matrix", list, &i.to_string(), "batch_size"],
                        format!("batch_size must be >= 1 (matrix.{list}[{i}].batch_size = {b})"),
                    );
                } else if b > MAX_BATCH_SIZE {
                    bad(
                        &["matrix", list, &i.to_string(), "batch_size"],
                        too_large_batch(&format!("matrix.{list}[{i}].batch_size"), b),
                    );
                }
            }
            if let Some(s) = e.seq_len {
                let limit = e
                    .model
                    .as_ref()
                    .and_then(|n| max_positions.get(n).copied())
                    .unwrap_or(smallest_max_pos);
                let at = ["matrix", list, &i.to_string(), "seq_len"];
                check_seq_len(bad, &at, s, limit);
            }
        }
    }
    check_quantize(c, bad);
    for (axis, empty) in [
        ("model", m.model.as_ref().is_some_and(Vec::is_empty)),
        ("precision", m.precision.as_ref().is_some_and(Vec::is_empty)),
        (
            "batch_size",
            m.batch_size.as_ref().is_some_and(Vec::is_empty),
        ),
        ("seq_len", m.seq_len.as_ref().is_some_and(Vec::is_empty)),
        (
            "prompt_len",
            m.prompt_len.as_ref().is_some_and(Vec::is_empty),
        ),
        (
            "new_tokens",
            m.new_tokens.as_ref().is_some_and(Vec::is_empty),
        ),
        ("scope", m.scope.as_ref().is_some_and(Vec::is_empty)),
        ("quantize", m.quantize.as_ref().is_some_and(Vec::is_empty)),
        (
            "layer_method",
            m.layer_method.as_ref().is_some_and(Vec::is_empty),
        ),
    ] {
        if empty {
            bad(
                &["matrix", axis],
                format!(
                    "matrix.{axis} is an empty list: give at least one value or leave the key out"
                ),
            );
        }
    }
}

/// `matrix.quantize` (and include/exclude entries' `quantize`): a selection must fit every model
/// the matrix may pair it with, and there must be a quantized precision for it to select in.
fn check_quantize(c: &ExperimentConfig, bad: &mut impl FnMut(&[&str], String)) {
    let m = &c.matrix;
    let models: Vec<&String> = match &m.model {
        Some(names) => names.iter().collect(),
        None => c.models.keys().collect(),
    };
    // (model name, blocks, layers with linear weights: blocks, pooler/pre-classifier, classifier)
    let shapes: Vec<(&String, usize, usize)> = models
        .iter()
        .filter_map(|name| {
            let section = c.models.get(*name)?;
            let preset = section.encoder_preset()?;
            let head = if section.head == HeadKind::Probe {
                1
            } else {
                2
            };
            Some((*name, preset.n_layers, preset.n_layers + head))
        })
        .collect();
    let quantized = m
        .precision
        .iter()
        .flatten()
        .copied()
        .chain(m.include.iter().filter_map(|e| e.precision))
        .any(|p| p.float_path().is_some());
    let mut check = |at: &[&str], key: &str, q: &QuantizeSelection, excluding: bool| {
        for (name, blocks, layers) in &shapes {
            if let Some(block) = q.block_out_of_range(*blocks) {
                bad(at, format!(
                    "{key} = {:?}: block {block} does not exist in model {name:?}, which has {blocks} transformer blocks (blocks:0-{})",
                    q.name(),
                    blocks.saturating_sub(1)
                ));
            }
            if let QuantizeSelection::Top(k) = q {
                if k > layers {
                    bad(at, format!(
                        "{key} = {:?}: model {name:?} has {layers} layers with linear weights to rank (its {blocks} blocks and its head); top:{layers} already quantizes them all",
                        q.name()
                    ));
                }
            }
        }
        // (An exclude entry that names a selection matches nothing then, harmlessly.)
        if !q.is_all() && !quantized && !excluding {
            bad(at, format!(
                "{key} = {:?} selects layers to quantize, but the matrix has no quantized precision (q8_0, q4k-fp16, int8-fp16, fp8-bf16, ...) for it to apply to: add one to matrix.precision, or leave {key} out",
                q.name()
            ));
        }
    };
    for (i, q) in m.quantize.iter().flatten().enumerate() {
        let i = i.to_string();
        check(
            &["matrix", "quantize", &i],
            &format!("matrix.quantize[{i}]"),
            q,
            false,
        );
    }
    for (list, entries) in [("include", &m.include), ("exclude", &m.exclude)] {
        for (i, e) in entries.iter().enumerate() {
            if let Some(q) = &e.quantize {
                let i = i.to_string();
                check(
                    &["matrix", list, &i, "quantize"],
                    &format!("matrix.{list}[{i}].quantize"),
                    q,
                    list == "exclude",
                );
            }
        }
    }
}

fn too_large_batch(key: &str, b: i64) -> String {
    format!(
        "{key} = {b}: at most {MAX_BATCH_SIZE} (a batch's inputs and activations grow with batch_size x seq_len; beyond this they fit no GPU's memory for these models)"
    )
}

/// A decoder's prompt or generation length: at least one token (a decode window holds whole
/// steps, so `new_tokens = 0` would measure nothing), at most [`MAX_TOKENS`]. Whether it fits the
/// model's context is checked with the model, when the plan is made.
fn check_tokens(bad: &mut impl FnMut(&[&str], String), at: &[&str], axis: &str, v: i64) {
    let key = key_path(&at.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    if v < 1 {
        let why = if axis == "new_tokens" {
            "a decode window measures whole decode steps, so at least one token must be generated"
        } else {
            "the prefill needs at least one prompt token"
        };
        bad(at, format!("{key} = {v}: {axis} must be >= 1 ({why})"));
    } else if v > MAX_TOKENS {
        bad(
            at,
            format!("{key} = {v}: at most {MAX_TOKENS} tokens (no decoder has a longer context)"),
        );
    }
}

fn check_seq_len(bad: &mut impl FnMut(&[&str], String), at: &[&str], s: i64, max_positions: usize) {
    // `matrix.seq_len[0]` or `matrix.include[1].seq_len`, as the user would write it.
    let key = key_path(&at.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    if s < 2 {
        bad(
            at,
            format!("{key} = {s}: seq_len must be >= 2 (room for [CLS] and [SEP])"),
        );
    } else if s as u64 > max_positions as u64 {
        bad(
            at,
            format!("{key} = {s}: seq_len exceeds the model's {max_positions} position embeddings"),
        );
    }
}
