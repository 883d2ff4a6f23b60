//! Every value checked before any model or dataset work, all problems collected into one error,
//! each naming its key and who set it.

mod device;
mod matrix;
mod models;
mod protocol;

use super::load::Origin;
use super::LoadedExperiment;
use crate::error::ConfigError;

/// Safe as one path component on any OS: not empty, letters, digits, `-`, `_`, `.`, no leading dot.
fn is_file_name_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// Upper bounds, each with the reason a larger value cannot be meant: a value past them passes
/// every type check but would panic, abort allocating, or wait for years once the run starts.
/// A pause, warm-up or window longer than a day (the runner turns seconds into timers).
const MAX_SECONDS: f64 = 86_400.0;
/// Loops per window or warm-up: every loop's latency is kept in the record.
const MAX_LOOPS: u32 = 10_000_000;
/// Windows per cell: a confidence interval needs a few, not thousands.
pub const MAX_REPEATS: u32 = 1_000;
/// A batch holds batch_size x seq_len tokens and activations of that size per layer: beyond
/// this no GPU's memory holds them for these models.
const MAX_BATCH_SIZE: i64 = 8_192;
/// A decoder's prompt or generation length: no model the runner builds has a longer context.
const MAX_TOKENS: i64 = 1 << 20;
/// Examples read from the dataset (or used to train and test the probe).
const MAX_EXAMPLES: i64 = 10_000_000;
/// Steps of the probe's training.
const MAX_PROBE_STEPS: i64 = 1_000_000;
/// CPU worker processes, GPU ordinals.
const MAX_WORKERS: usize = 256;
/// experiment.name and model names become file names, with room for the run id and suffixes
/// under the 255-byte limit most file systems have.
const MAX_NAME_LEN: usize = 100;
/// The power sampler's interval: a minute between samples leaves no trace to plot.
const MAX_SAMPLE_INTERVAL_MS: u64 = 60_000;

/// Checks every value before any model work. Collects all problems, each with its key.
pub(super) fn validate(loaded: &LoadedExperiment, origin: &Origin<'_>) -> Result<(), ConfigError> {
    let c = &loaded.config;
    let mut problems = Vec::new();
    // Each problem names the key it is about, so the message can say who set it and where.
    let mut bad = |at: &[&str], msg: String| {
        let path: Vec<String> = at.iter().map(|p| p.to_string()).collect();
        problems.push(format!("{}: {msg}", origin.of(&path)));
    };

    let name = &c.experiment.name;
    if !is_file_name_safe(name) {
        bad(&["experiment", "name"], format!(
            "experiment.name = {name:?}: use letters, digits, '-', '_' and '.' only (it names the results folder)"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        bad(&["experiment", "name"], format!(
            "experiment.name is {} characters long: at most {MAX_NAME_LEN} (it names the results folder, and file names are limited to 255 bytes)",
            name.len()
        ));
    }
    for model_name in c.models.keys() {
        if model_name.len() > MAX_NAME_LEN {
            bad(&["models", model_name], format!(
                "models.{}...: a model name is {} characters long, at most {MAX_NAME_LEN} (it names chart files)",
                &model_name[..model_name.char_indices().nth(20).map_or(model_name.len(), |(i, _)| i)],
                model_name.len()
            ));
        }
        if !is_file_name_safe(model_name) {
            bad(&["models", model_name], format!(
                "{}: model names may hold letters, digits, '-', '_' and '.' only, not starting with '.' (they name chart files)",
                crate::config::toml_key(&["models", model_name])
            ));
        }
    }

    device::check(c, &mut bad);
    protocol::check(c, &mut bad);

    let dataset = loaded.resolve(&c.dataset.path);
    if !dataset.is_file() {
        bad(&["dataset", "path"], format!(
            "dataset.path: no dataset file at {} (paths are relative to the experiment file's folder)",
            dataset.display()
        ));
    }
    let tokenizer = loaded.resolve(&c.dataset.tokenizer);
    if !tokenizer.is_file() {
        bad(
            &["dataset", "tokenizer"],
            format!(
                "dataset.tokenizer: no tokenizer file (vocab.txt or tokenizer.json) at {}",
                tokenizer.display()
            ),
        );
    }
    if let Some(limit) = c.dataset.limit {
        if limit < 1 {
            bad(
                &["dataset", "limit"],
                format!("dataset.limit = {limit}: must be >= 1 (or left out to use every example)"),
            );
        } else if limit > MAX_EXAMPLES {
            bad(&["dataset", "limit"], format!(
                "dataset.limit = {limit}: at most {MAX_EXAMPLES} examples (or leave it out to use every example)"
            ));
        }
    }

    let max_positions = models::check(loaded, &mut bad);
    matrix::check(c, &max_positions, &mut bad);

    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// Panics unless every value of a validated experiment is one a run can use: each duration a
/// timer can hold, loop counts and batch shapes whose buffers can be sized. For the fuzz target
/// and tests: validation's bounds must imply these, or a run would panic past them.
pub fn assert_runnable(loaded: &LoadedExperiment) {
    let p = &loaded.config.protocol;
    for s in [
        p.warmup_s,
        p.warmup_max_s,
        p.stabilize_s,
        p.cooldown_s,
        p.idle_settle_s,
        p.idle_baseline_s,
        p.min_window_s,
    ] {
        let _ = std::time::Duration::from_secs_f64(s);
    }
    let loops = u64::from(p.repeats) * u64::from(p.min_loops.max(p.warmup_min_loops));
    assert!(loops <= 1 << 40, "{loops} loops");
    let m = &loaded.config.matrix;
    let batches = m
        .batch_size
        .iter()
        .flatten()
        .chain(m.include.iter().filter_map(|e| e.batch_size.as_ref()));
    for &b in batches {
        assert!((1..=MAX_BATCH_SIZE).contains(&b), "batch_size {b}");
        // A batch's ids and mask at the longest sequence the presets allow.
        let tokens = (b as usize)
            .checked_mul(8192)
            .expect("batch tokens overflow");
        assert!(tokens < 1 << 32);
    }
    assert!(loaded.config.experiment.name.len() <= MAX_NAME_LEN);
}
