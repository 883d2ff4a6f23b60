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
    let as_config_error =
        |e: anyhow::Error| ConfigError::new(format!("{}: {e:#}", exp.file.display()));

    let specs = exp
        .config
        .models
        .iter()
        .map(|(name, section)| Ok((name.clone(), ModelSpec::resolve(name, section, &exp)?)))
        .collect::<Result<BTreeMap<_, _>>>()
        .map_err(as_config_error)?;

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

/// Lists the cells without touching a model.
pub fn plan(file: &Path, overrides: &[String]) -> Result<()> {
    let exp = config::load(file, overrides)?;
    let plan = matrix::expand(&exp)?;
    println!(
        "{:<12}  {:<16}  {:<9}  {:>5}  {:>5}  {:<6}",
        "ID", "MODEL", "PRECISION", "BATCH", "SEQ", "SCOPE"
    );
    for c in &plan.cells {
        println!(
            "{:<12}  {:<16}  {:<9}  {:>5}  {:>5}  {:<6}",
            c.id,
            c.model,
            c.precision.name(),
            c.batch_size,
            c.seq_len,
            c.scope.name()
        );
    }
    if plan.merged_duplicates > 0 {
        println!(
            "({} duplicate combination(s) merged)",
            plan.merged_duplicates
        );
    }
    println!("{} cells", plan.cells.len());
    Ok(())
}
