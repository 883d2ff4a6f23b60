//! What a run will measure, prepared and checked before the first measurement: the experiment
//! loaded and validated, its matrix expanded into cells, its models resolved, its dataset
//! tokenized for every sequence length, its report templates found. `runner plan` lists it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::protocol_time::{least_protocol_s, WindowFloor};
use super::RunOptions;
use crate::config::{self, toml_key, LoadedExperiment};
use crate::data::{self, PromptSet, TokenizedSet};
use crate::error::ConfigError;
use crate::matrix::{self, Cell, Target};
use crate::model::ModelSpec;
use crate::report::TemplateSource;
use crate::sensor::energy::{MIN_COUNTER_TICKS, NOMINAL_COUNTER_UPDATE_S};

/// Everything the cells share, prepared (and validated) before the first measurement.
pub struct Prepared {
    pub exp: LoadedExperiment,
    pub plan: Vec<Cell>,
    /// Combinations of the matrix that resolved to a cell already in the plan.
    pub merged_duplicates: usize,
    pub(super) specs: BTreeMap<String, ModelSpec>,
    /// Encoder cells' batches, per seq_len.
    pub(super) tokenized: BTreeMap<usize, TokenizedSet>,
    /// Decoder cells' prompts, per (model, prompt_len): as many as the largest batch needs.
    pub(super) prompts: BTreeMap<(String, usize), PromptSet>,
    /// Text for the perplexity of decoders with real weights, per model.
    pub(super) perplexity_text: BTreeMap<String, PromptSet>,
    pub templates: TemplateSource,
    /// Where the plan's cells run (`prefill_attention = "auto"` resolved by it); the device the
    /// run opens must be this one.
    pub target: Target,
}

/// Loads and checks every input: config, matrix, templates, dataset and tokenizer. Any problem here
/// is the user's input (exit 2), and nothing has been measured yet.
pub fn prepare(opts: &RunOptions) -> Result<Prepared> {
    let exp = config::load(&opts.file, &opts.overrides)?;
    let target = target_of(&exp.config.device);
    let expanded = matrix::expand(&exp, target)?;
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
            .with_context(|| toml_key(&["models", name, "weights"]))
            .map_err(as_config_error)?;
    }

    let d = &exp.config.dataset;
    let dataset = data::load_dataset(&exp.resolve(&d.path), d.format, d.limit.map(|l| l as usize))
        .context("dataset.path")
        .map_err(as_config_error)?;
    let encoders: Vec<(&String, &ModelSpec)> = specs
        .iter()
        .filter(|(_, s)| s.encoder().is_some())
        .collect();
    let mut tokenized = BTreeMap::new();
    for seq_len in plan
        .iter()
        .filter(|c| c.prompt_len.is_none())
        .map(|c| c.seq_len)
    {
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
        for (name, spec) in &encoders {
            let m = spec.vocab_size();
            if largest as usize >= m {
                return Err(ConfigError::new(format!(
                    "{}: the tokenizer gives ids up to {largest}, but {}'s vocabulary has {m} (ids 0 to {}): its ids would index past the embeddings; use the tokenizer the model was trained with",
                    in_tokenizer(),
                    toml_key(&["models", name]),
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
    let (prompts, perplexity_text) =
        decoder_prompts(&exp, &plan, &specs, &dataset).map_err(as_config_error)?;
    Ok(Prepared {
        exp,
        plan,
        merged_duplicates,
        specs,
        tokenized,
        prompts,
        perplexity_text,
        templates,
        target,
    })
}

/// For each own decoder left at `prefill_attention = "auto"`: what it resolved to in the plan's
/// cells, and for which device, so a plan says what will run before anything does.
fn prefill_lines(prepared: &Prepared) -> Vec<String> {
    let device = match prepared.target {
        Target::Cpu => "the CPU",
        Target::Cuda => "CUDA",
    };
    let mut lines = Vec::new();
    for (name, spec) in &prepared.specs {
        let auto = spec.decoder().is_some_and(|d| {
            d.implementation == config::Implementation::Own && d.prefill_attention.is_auto()
        });
        let cells: Vec<&Cell> = prepared.plan.iter().filter(|c| &c.model == name).collect();
        if !auto || cells.is_empty() {
            continue;
        }
        let at = |flash: bool| {
            let mut p: Vec<&str> = Vec::new();
            for c in cells
                .iter()
                .filter(|c| c.prefill_attention.is_plain() != flash)
            {
                if !p.contains(&c.precision.name()) {
                    p.push(c.precision.name());
                }
            }
            p.join(", ")
        };
        let (flash, plain) = (at(true), at(false));
        let mut said = Vec::new();
        if !flash.is_empty() {
            said.push(format!("flash at {flash}"));
        }
        if !plain.is_empty() {
            said.push(format!("plain at {plain}"));
        }
        lines.push(format!(
            "{}.prefill_attention = \"auto\" on {device}: {}",
            toml_key(&["models", name]),
            said.join(", ")
        ));
    }
    lines
}

/// Where the cells will run: `device.backend` as written, `auto` as [`crate::device::select`]
/// will resolve it (a CUDA build with a usable GPU), so that what a cell measures is settled in
/// the plan, before anything is measured.
fn target_of(device: &config::DeviceSection) -> Target {
    match device.backend {
        config::Backend::Cpu => Target::Cpu,
        config::Backend::Cuda => Target::Cuda,
        config::Backend::Auto if crate::device::cuda_usable(device.gpu) => Target::Cuda,
        config::Backend::Auto => Target::Cpu,
    }
}

/// Refuses a device other than the one the plan resolved its cells for (a GPU that answered
/// when the plan was made and not when the run opened it): the cells' ids and prefill attention
/// would say what did not run.
pub(super) fn check_target(prepared: &Prepared, backend: &str) -> Result<()> {
    let planned = match prepared.target {
        Target::Cpu => "cpu",
        Target::Cuda => "cuda",
    };
    let written = match prepared.exp.config.device.backend {
        config::Backend::Auto => "auto",
        config::Backend::Cuda => "cuda",
        config::Backend::Cpu => "cpu",
    };
    anyhow::ensure!(
        planned == backend,
        "the plan resolved its cells for {planned} (device.backend = \"{written}\"), but the run opened {backend}: run again, or set device.backend to the one you mean"
    );
    Ok(())
}

/// Tokens of text each decoder with real weights is scored on for perplexity: this many
/// sequences of this many tokens (teacher-forced one token per step, the sequences as a batch).
pub const PERPLEXITY_SEQUENCES: usize = 4;
pub const PERPLEXITY_TOKENS: usize = 64;

/// Prompts for every decoder cell, each model's made with its own tokenizer (its GGUF metadata's
/// or its folder's tokenizer.json; random weights take the dataset's tokenizer), checked against
/// the model's vocabulary before anything runs.
#[allow(clippy::type_complexity)]
fn decoder_prompts(
    exp: &LoadedExperiment,
    plan: &[Cell],
    specs: &BTreeMap<String, ModelSpec>,
    dataset: &data::Dataset,
) -> Result<(
    BTreeMap<(String, usize), PromptSet>,
    BTreeMap<String, PromptSet>,
)> {
    let mut needed: BTreeMap<(String, usize), usize> = BTreeMap::new();
    for c in plan {
        if let Some(p) = c.prompt_len {
            let n = needed.entry((c.model.clone(), p)).or_default();
            *n = (*n)
                .max(c.batch_size)
                .max(super::generate::FIDELITY_PROMPTS);
        }
    }
    let mut prompts = BTreeMap::new();
    let mut perplexity = BTreeMap::new();
    let dataset_tokenizer = exp.resolve(&exp.config.dataset.tokenizer);
    for ((model, prompt_len), count) in needed {
        let spec = &specs[&model];
        let decoder = spec.decoder().expect("decoder cells have decoder specs");
        let (tokenizer, described) = match decoder
            .tokenizer()
            .with_context(|| format!("{}: its tokenizer", toml_key(&["models", &model])))?
        {
            Some(t) => t,
            None => (
                data::build_tokenizer(&dataset_tokenizer, prompt_len)
                    .context("dataset.tokenizer")?,
                format!(
                    "{} (dataset.tokenizer: the model has no tokenizer of its own)",
                    dataset_tokenizer.display()
                ),
            ),
        };
        let vocab = spec.vocab_size();
        let listed = tokenizer.get_vocab_size(true);
        if listed > vocab {
            anyhow::bail!(
                "{}: the tokenizer {described} has {listed} tokens but the model's vocabulary has {vocab}: its ids would index past the embeddings; use the model's own tokenizer",
                toml_key(&["models", &model])
            );
        }
        let set = data::prompts(&tokenizer, &described, dataset, prompt_len, count).with_context(
            || {
                format!(
                    "{}: prompts of {prompt_len} tokens",
                    toml_key(&["models", &model])
                )
            },
        )?;
        if set.max_id as usize >= vocab {
            anyhow::bail!(
                "{}: the tokenizer {described} gives id {} but the model's vocabulary has {vocab} tokens",
                toml_key(&["models", &model]),
                set.max_id
            );
        }
        if decoder.real_weights() && !perplexity.contains_key(&model) {
            let text = data::prompts(
                &tokenizer,
                &described,
                dataset,
                PERPLEXITY_TOKENS,
                PERPLEXITY_SEQUENCES,
            )?;
            perplexity.insert(model.clone(), text);
        }
        prompts.insert((model, prompt_len), set);
    }
    Ok((prompts, perplexity))
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

/// The line that says how long at least `cells` take, before anything is measured. `floor`:
/// what the run's energy sensor adds to each window; `None` before a sensor is opened
/// (`runner plan`), where cells that run on a GPU get the figure with NVML's floor beside the
/// plain one.
pub fn lower_bound_line(
    prepared: &Prepared,
    cells: &[&Cell],
    floor: Option<WindowFloor>,
) -> String {
    let exp = &prepared.exp;
    let p = &exp.config.protocol;
    let idle = p.idle_settle_s + p.idle_baseline_s;
    let least = |floor| least_protocol_s(exp, &prepared.specs, cells, floor);
    let floor_note = |f: WindowFloor| {
        f.update_s.map_or(String::new(), |u| {
            format!(
                "; each window spans at least {MIN_COUNTER_TICKS} updates of the GPU's energy counter, every {:.0} ms: {:.2} s",
                u * 1e3,
                f.least_window_s
            )
        })
    };
    let (figure, note) = match floor {
        Some(f) => (human_duration(least(f)), floor_note(f)),
        None if !on_cpu(exp) => {
            let nvml = WindowFloor::counter(NOMINAL_COUNTER_UPDATE_S);
            (
                format!(
                    "{} ({} where NVML meters the GPU's energy{})",
                    human_duration(least(WindowFloor::NONE)),
                    human_duration(least(nvml)),
                    floor_note(nvml)
                ),
                String::new(),
            )
        }
        None => (human_duration(least(WindowFloor::NONE)), String::new()),
    };
    format!(
        "the protocol alone takes at least {figure} for {} cell(s) (warm-ups, windows, pauses{note}; slow loops, fidelity passes and loading add to it{})",
        cells.len(),
        if idle > 0.0 {
            format!(", and {} of idle baseline where energy is measured", human_duration(idle))
        } else {
            String::new()
        }
    )
}

/// Whether the cells run on the CPU: `backend = "cpu"`, or `auto` in a build without CUDA.
fn on_cpu(exp: &LoadedExperiment) -> bool {
    match exp.config.device.backend {
        config::Backend::Cpu => true,
        config::Backend::Auto => !cfg!(feature = "cuda"),
        config::Backend::Cuda => false,
    }
}

/// The cells that will be measured: those of a decoder that refuses their precision or batch
/// are skipped with the reason when the run reaches them, and cost nothing.
fn runnable<'c>(prepared: &Prepared, cells: &[&'c Cell]) -> Vec<&'c Cell> {
    cells
        .iter()
        .copied()
        .filter(
            |c| match prepared.specs.get(&c.model).and_then(|s| s.decoder()) {
                Some(d) => {
                    d.refuses(c.precision).is_none()
                        && d.refuses_batch(c.precision, c.batch_size).is_none()
                }
                None => true,
            },
        )
        .collect()
}

/// Where the run would measure on this CPU: how long its cells will take here, priced as a run
/// prices them before its first cell (cells a decoder refuses are skipped, so not counted).
fn cpu_estimate_line(prepared: &Prepared, cells: &[&Cell]) -> Result<Option<String>> {
    let runs = runnable(prepared, cells);
    if !on_cpu(&prepared.exp) || runs.is_empty() {
        return Ok(None);
    }
    let device = candle_core::Device::Cpu;
    let cost = super::estimate::RunCost::measure(
        &prepared.specs,
        &device,
        &runs,
        &prepared.exp.config.protocol,
    )?;
    // The CPU's sensors (RAPL, or none) have no counter to wait for.
    let estimate = super::estimate::Estimate::new(
        &runs,
        &cost,
        &prepared.exp.config.protocol,
        WindowFloor::NONE,
    );
    Ok(Some(format!(
        "on this CPU the {} cell(s) it runs take about {}, from {}",
        runs.len(),
        human_duration(estimate.initial_s),
        estimate.basis
    )))
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
    let plan = matrix::Plan {
        cells: prepared.plan.clone(),
        merged_duplicates: prepared.merged_duplicates,
    };
    // The per-layer axes get columns only when a cell uses them, so plans without them print
    // as they always did.
    let quantize = plan.cells.iter().any(|c| !c.quantize.is_all());
    let method = plan.cells.iter().any(|c| !c.layer_method.is_isolated());
    // Decoder cells add their prompt and generation lengths.
    let decoders = plan.cells.iter().any(|c| c.prompt_len.is_some());
    let extra = |q: &str, m: &str, p: &str, n: &str| {
        let mut s = String::new();
        if quantize {
            s.push_str(&format!("  {q:<10}"));
        }
        if method {
            s.push_str(&format!("  {m:<8}"));
        }
        if decoders {
            s.push_str(&format!("  {p:>6}  {n:>4}"));
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
        extra("QUANTIZE", "METHOD", "PROMPT", "NEW").trim_end()
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
        let or_dash = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
        let seq = if c.prompt_len.is_some() {
            "-".to_string()
        } else {
            c.seq_len.to_string()
        };
        say!(
            "{:<12}  {:<16}  {:<9}  {:>5}  {:>5}  {:<6}{}",
            c.id,
            c.model,
            c.precision.name(),
            c.batch_size,
            seq,
            c.scope.name(),
            extra(
                &quantize,
                layer_method,
                &or_dash(c.prompt_len),
                &or_dash(c.new_tokens)
            )
            .trim_end()
        );
    }
    if plan.merged_duplicates > 0 {
        say!(
            "({} duplicate combination(s) merged)",
            plan.merged_duplicates
        );
    }
    for line in prefill_lines(&prepared) {
        say!("({line})");
    }
    // Before the count, which stays the last line (scripts read it).
    let all: Vec<&Cell> = plan.cells.iter().collect();
    say!(
        "({})",
        lower_bound_line(&prepared, &runnable(&prepared, &all), None)
    );
    if let Some(line) = cpu_estimate_line(&prepared, &all)? {
        say!("({line})");
    }
    say!("{} cells", plan.cells.len());
    Ok(())
}
