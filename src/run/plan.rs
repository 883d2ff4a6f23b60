//! What a run will measure, prepared and checked before the first measurement: the experiment
//! loaded and validated, its matrix expanded into cells, its models resolved, its dataset
//! tokenized for every sequence length, its report templates found. `runner plan` lists it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::RunOptions;
use crate::config::{self, LoadedExperiment};
use crate::data::{self, TokenizedSet};
use crate::error::ConfigError;
use crate::matrix::{self, Cell};
use crate::model::ModelSpec;
use crate::report::TemplateSource;

/// Everything the cells share, prepared (and validated) before the first measurement.
pub struct Prepared {
    pub exp: LoadedExperiment,
    pub plan: Vec<Cell>,
    pub(super) specs: BTreeMap<String, ModelSpec>,
    pub(super) tokenized: BTreeMap<usize, TokenizedSet>,
    pub templates: TemplateSource,
}

/// Loads and checks every input: config, matrix, templates, dataset and tokenizer. Any problem here
/// is the user's input (exit 2), and nothing has been measured yet.
pub fn prepare(opts: &RunOptions) -> Result<Prepared> {
    let exp = config::load(&opts.file, &opts.overrides)?;
    let plan = matrix::expand(&exp)?.cells;
    let templates = TemplateSource::resolve(opts.templates.as_deref())?;
    templates.check()?;
    let as_config_error =
        |e: anyhow::Error| ConfigError::new(format!("{}: {e:#}", exp.file.display()));

    let specs = exp
        .config
        .models
        .iter()
        .map(|(name, section)| Ok((name.clone(), ModelSpec::resolve(name, section, &exp)?)))
        .collect::<Result<BTreeMap<_, _>>>()
        .map_err(as_config_error)?;

    for (name, spec) in &specs {
        if let crate::model::WeightsSource::HuggingFaceDir(dir) = &spec.weights {
            check_float_weights(&dir.join("model.safetensors"))
                .with_context(|| format!("models.{name}.weights"))
                .map_err(as_config_error)?;
        }
    }

    let d = &exp.config.dataset;
    let dataset = data::load_dataset(&exp.resolve(&d.path), d.format, d.limit.map(|l| l as usize))
        .context("dataset.path")
        .map_err(as_config_error)?;
    let mut tokenized = BTreeMap::new();
    for seq_len in plan.iter().map(|c| c.seq_len) {
        if tokenized.contains_key(&seq_len) {
            continue;
        }
        let tokenizer = data::build_tokenizer(&exp.resolve(&d.tokenizer), seq_len)
            .context("dataset.tokenizer")
            .map_err(as_config_error)?;
        // An id past the model's embedding table fails every cell ("invalid index") otherwise.
        let n = tokenizer.get_vocab_size(true);
        for (name, spec) in &specs {
            let m = spec.preset.vocab_size;
            if n > m {
                return Err(ConfigError::new(format!(
                    "dataset.tokenizer: {}: the tokenizer's vocabulary ({n} tokens) is larger than model {name}'s ({m}): its ids would index past the embeddings; use the tokenizer the model was trained with",
                    exp.resolve(&d.tokenizer).display()
                ))
                .into());
            }
        }
        let set = data::tokenize(&tokenizer, &dataset, seq_len).map_err(as_config_error)?;
        tokenized.insert(seq_len, set);
    }
    Ok(Prepared {
        exp,
        plan,
        specs,
        tokenized,
        templates,
    })
}

/// Refuses a checkpoint with tensors that are not floating point: the runner casts weights to
/// the cell's float dtype, and an integer tensor (a quantized export, token ids) would be cast
/// into nonsense without a word. Reads the safetensors header only.
fn check_float_weights(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let n = u64::from_le_bytes(len);
    anyhow::ensure!(
        n < 100 << 20,
        "{}: implausible safetensors header size {n}",
        path.display()
    );
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("{}: truncated safetensors header", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{}: unreadable safetensors header", path.display()))?;
    let mut bad: Vec<String> = header
        .iter()
        // position_ids is a buffer of integers some exports carry, not a weight: never loaded.
        .filter(|(name, _)| *name != "__metadata__" && !name.ends_with("position_ids"))
        .filter_map(|(name, t)| {
            let dtype = t.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
            (!matches!(dtype, "F16" | "BF16" | "F32" | "F64")).then(|| format!("{name} ({dtype})"))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort();
    let more = bad.len().saturating_sub(3);
    anyhow::bail!(
        "{}: tensor(s) {}{} are not floating point (F16, BF16, F32 or F64): the runner would cast them silently; export the checkpoint in a float dtype",
        path.display(),
        bad[..bad.len().min(3)].join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )
}

/// The least time the protocol spends on `cells`, in seconds: per cell the stabilization pause
/// and cool-down, and per measured unit (the model, or each layer and component of a `layers`
/// cell) the minimum warm-up and `repeats` windows of `min_window_s`. Slow loops, fidelity
/// passes, loading and the idle baseline come on top, so a run never takes less.
pub fn protocol_lower_bound_s(exp: &LoadedExperiment, cells: &[&Cell]) -> f64 {
    let p = &exp.config.protocol;
    let per_unit = p.warmup_s + f64::from(p.repeats) * p.min_window_s;
    cells
        .iter()
        .map(|c| {
            let units = match c.scope {
                config::Scope::Model => 1.0,
                // Isolated: embeddings, pre-classifier and classifier, and each block with its
                // 4 parts; prefix: one prefix per top-level layer.
                config::Scope::Layers => exp
                    .config
                    .models
                    .get(&c.model)
                    .and_then(|m| crate::config::Preset::lookup(m.architecture, &m.preset))
                    .map_or(1.0, |preset| {
                        let n = preset.n_layers as f64;
                        let isolated = if c.layer_method.isolated() {
                            3.0 + 5.0 * n
                        } else {
                            0.0
                        };
                        let prefix = if c.layer_method.prefix() {
                            3.0 + n
                        } else {
                            0.0
                        };
                        isolated + prefix
                    }),
            };
            p.stabilize_s + p.cooldown_s + units * per_unit
        })
        .sum()
}

/// `seconds` as a person reads a duration: "45 s", "12 min", "2 h 05 min".
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600).div_ceil(60).min(59)),
    }
}

/// The line that says how long at least `cells` take, before anything is measured.
pub fn lower_bound_line(exp: &LoadedExperiment, cells: &[&Cell]) -> String {
    let p = &exp.config.protocol;
    let idle = p.idle_settle_s + p.idle_baseline_s;
    format!(
        "the protocol alone takes at least {} for {} cell(s) (warm-ups, windows, pauses; slow loops, fidelity passes and loading add to it{})",
        human_duration(protocol_lower_bound_s(exp, cells)),
        cells.len(),
        if idle > 0.0 {
            format!(", and {} of idle baseline where energy is measured", human_duration(idle))
        } else {
            String::new()
        }
    )
}

/// Lists the cells without touching a model.
pub fn plan(file: &Path, overrides: &[String]) -> Result<()> {
    let exp = config::load(file, overrides)?;
    let plan = matrix::expand(&exp)?;
    // The per-layer axes get columns only when a cell uses them, so plans without them print
    // as they always did.
    let quantize = plan.cells.iter().any(|c| !c.quantize.is_all());
    let method = plan.cells.iter().any(|c| !c.layer_method.is_isolated());
    let extra = |q: &str, m: &str| {
        let mut s = String::new();
        if quantize {
            s.push_str(&format!("  {q:<10}"));
        }
        if method {
            s.push_str(&format!("  {m:<8}"));
        }
        s
    };
    println!(
        "{:<12}  {:<16}  {:<9}  {:>5}  {:>5}  {:<6}{}",
        "ID",
        "MODEL",
        "PRECISION",
        "BATCH",
        "SEQ",
        "SCOPE",
        extra("QUANTIZE", "METHOD").trim_end()
    );
    for c in &plan.cells {
        let layer_method = if c.scope == config::Scope::Layers {
            c.layer_method.name()
        } else {
            "-"
        };
        let quantize = if c.precision.float_path().is_some() {
            c.quantize.name()
        } else {
            "-".to_string()
        };
        println!(
            "{:<12}  {:<16}  {:<9}  {:>5}  {:>5}  {:<6}{}",
            c.id,
            c.model,
            c.precision.name(),
            c.batch_size,
            c.seq_len,
            c.scope.name(),
            extra(&quantize, layer_method).trim_end()
        );
    }
    if plan.merged_duplicates > 0 {
        println!(
            "({} duplicate combination(s) merged)",
            plan.merged_duplicates
        );
    }
    // Before the count, which stays the last line (scripts read it).
    let all: Vec<&Cell> = plan.cells.iter().collect();
    println!("({})", lower_bound_line(&exp, &all));
    println!("{} cells", plan.cells.len());
    Ok(())
}
