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
    /// Combinations of the matrix that resolved to a cell already in the plan.
    pub merged_duplicates: usize,
    pub(super) specs: BTreeMap<String, ModelSpec>,
    pub(super) tokenized: BTreeMap<usize, TokenizedSet>,
    pub templates: TemplateSource,
}

/// Loads and checks every input: config, matrix, templates, dataset and tokenizer. Any problem here
/// is the user's input (exit 2), and nothing has been measured yet.
pub fn prepare(opts: &RunOptions) -> Result<Prepared> {
    let exp = config::load(&opts.file, &opts.overrides)?;
    let expanded = matrix::expand(&exp)?;
    let (plan, merged_duplicates) = (expanded.cells, expanded.merged_duplicates);
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
        spec.check_weights()
            .with_context(|| format!("models.{name}.weights"))
            .map_err(as_config_error)?;
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
        let tokenizer_path = exp.resolve(&d.tokenizer);
        let in_tokenizer = || format!("dataset.tokenizer {}", tokenizer_path.display());
        let tokenizer = data::build_tokenizer(&tokenizer_path, seq_len)
            .context("dataset.tokenizer")
            .map_err(as_config_error)?;
        // An id past the model's embedding table fails every cell ("invalid index") otherwise:
        // the largest id counts, not the number of tokens (ids may have gaps).
        let largest = data::largest_token_id(&tokenizer).unwrap_or(0);
        for (name, spec) in &specs {
            let m = spec.preset.vocab_size;
            if largest as usize >= m {
                return Err(ConfigError::new(format!(
                    "{}: the tokenizer gives ids up to {largest}, but model {name}'s vocabulary has {m} (ids 0 to {}): its ids would index past the embeddings; use the tokenizer the model was trained with",
                    in_tokenizer(),
                    m - 1
                ))
                .into());
            }
        }
        let set = data::tokenize(&tokenizer, &dataset, seq_len)
            .with_context(in_tokenizer)
            .map_err(as_config_error)?;
        tokenized.insert(seq_len, set);
    }
    Ok(Prepared {
        exp,
        plan,
        merged_duplicates,
        specs,
        tokenized,
        templates,
    })
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

/// Lists the cells after the same preparation a run makes (the experiment, weights' headers and
/// config.json, dataset, tokenizer, templates): `runner plan` is the dry run, so whatever a run
/// would refuse before measuring, it refuses the same way. No model is built, no device opened.
pub fn plan(file: &Path, overrides: &[String]) -> Result<()> {
    let prepared = prepare(&RunOptions {
        file: file.to_path_buf(),
        out: None,
        overrides: overrides.to_vec(),
        templates: None,
        results_root: std::path::PathBuf::from("results"),
        resume: false,
        fail_fast: false,
        cells: super::CellSelection::All,
        worker: None,
    })?;
    let exp = &prepared.exp;
    let plan = matrix::Plan {
        cells: prepared.plan.clone(),
        merged_duplicates: prepared.merged_duplicates,
    };
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
    say!(
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
        say!(
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
        say!(
            "({} duplicate combination(s) merged)",
            plan.merged_duplicates
        );
    }
    // Before the count, which stays the last line (scripts read it).
    let all: Vec<&Cell> = plan.cells.iter().collect();
    say!("({})", lower_bound_line(exp, &all));
    say!("{} cells", plan.cells.len());
    Ok(())
}
