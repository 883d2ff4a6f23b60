//! One run of an experiment: validate everything, then measure the cells one after another,
//! writing each record as soon as its cell ends, then post-process and render the reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

use crate::analysis::{self, CellSummary};
use crate::config::{self, LoadedExperiment, Precision, ProtocolSection, Scope};
use crate::data::{self, BatchCycle, TokenizedSet};
use crate::device::{self, SelectedDevice};
use crate::error::{exit, ConfigError};
use crate::fidelity;
use crate::matrix::{self, Cell};
use crate::measure::{self, Clock, RealClock, SamplerOverhead};
use crate::model::{self, Encoder, ModelSpec, ModelStore};
use crate::probe;
use crate::report::{self, TemplateSource};
use crate::results::{
    now_rfc3339, CellRecord, CellStatus, LayerRecord, Manifest, RunDir, Session, SCHEMA_VERSION,
};
use crate::sensor::{self, EnergySensor, SensorInfo};

pub struct RunOptions {
    pub file: PathBuf,
    pub out: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub templates: Option<PathBuf>,
    /// Parent of `<experiment>/<run-id>/` when `out` is not given.
    pub results_root: PathBuf,
    /// Complete an earlier run (the latest one, or `out`) instead of starting a new one.
    pub resume: bool,
    /// Stop at the first failed cell instead of recording it and going on.
    pub fail_fast: bool,
    /// Which cells this invocation measures: all of the plan, or some (a Slurm array task).
    pub cells: CellSelection,
    /// Set for a worker of a multi-GPU run (its label, e.g. `gpu1`): it measures into the run
    /// directory its coordinator prepared, claiming cells one at a time.
    pub worker: Option<String>,
}

/// `--cell-index N` / `--cell ID`: measure only these cells of the plan, into a run directory
/// that `runner slurm` (or a coordinator) prepared.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CellSelection {
    #[default]
    All,
    Index(usize),
    Ids(Vec<String>),
}

/// Everything the cells share, prepared (and validated) before the first measurement.
pub(crate) struct Prepared {
    pub(crate) exp: LoadedExperiment,
    pub(crate) plan: Vec<Cell>,
    specs: BTreeMap<String, ModelSpec>,
    tokenized: BTreeMap<usize, TokenizedSet>,
    pub(crate) templates: TemplateSource,
}

/// Loads and checks every input: config, matrix, templates, dataset and tokenizer. Any problem here
/// is the user's input (exit 2), and nothing has been measured yet.
pub(crate) fn prepare(opts: &RunOptions) -> Result<Prepared> {
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

/// Why a sweep ended before its last cell.
enum Stop {
    Interrupted,
    FailFast(String),
    /// The device or its sensor stopped answering: measuring on would only record failures.
    DeviceLost(String),
}

impl Stop {
    /// The session outcome recorded for it.
    fn outcome(&self) -> &'static str {
        match self {
            Stop::Interrupted => "interrupted",
            Stop::FailFast(_) => "stopped at the first failure (--fail-fast)",
            Stop::DeviceLost(_) => "device lost",
        }
    }
}

/// Runs an experiment; returns the exit code (0 all cells succeeded, 1 some failed, 130
/// interrupted).
pub fn run(opts: &RunOptions) -> Result<u8> {
    // Everything from here to the last report counts as wall time; only the protocol's own
    // waiting and measuring (idle baseline, warm-up, stabilization, windows, cool-down) does not
    // count as the runner's overhead.
    let started = std::time::Instant::now();
    let mut protocol_time = ProtocolTime::default();
    let prepared = prepare(opts)?;
    let worker = match (&opts.worker, &opts.cells) {
        (Some(label), _) => Some(label.clone()),
        (None, CellSelection::All) => None,
        (None, CellSelection::Index(i)) => Some(task_label(*i)),
        (None, CellSelection::Ids(_)) => Some(task_label(std::process::id() as usize)),
    };
    if let Some(label) = worker {
        return run_worker(opts, &prepared, &label);
    }
    if let Some(slots) = crate::workers::slots(&prepared.exp.config.device)? {
        return crate::workers::coordinate(opts, &prepared, &slots);
    }
    let (selected, mut sensor, sensor_info, notices) =
        open_device_and_sensor(&prepared, "runner:")?;

    let fresh = Manifest::new(
        &prepared.exp,
        "",
        &prepared.plan,
        &selected.info,
        &sensor_info,
        sensor.gpu_state(),
        notices,
    )?;
    let (run_dir, mut manifest, earlier) = open_run(opts, &prepared, fresh)?;
    crate::interrupt::install()?;
    // Ok and skipped records are final; a failed cell is measured again on resume (the cause may
    // have been the machine, e.g. a lost GPU).
    let is_final = |r: &CellRecord| r.status != CellStatus::Failed;
    let to_measure: Vec<&Cell> = prepared
        .plan
        .iter()
        .filter(|c| !earlier.get(&c.id).is_some_and(is_final))
        .collect();
    // Every earlier record belongs to the plan (`reopen` refuses strays).
    let already = prepared.plan.len() - to_measure.len();
    let todo = to_measure.len();
    manifest.sessions.push(Session::begin(already));
    manifest.ended_at = None;
    run_dir.write_manifest(&manifest)?;

    let protocol = &prepared.exp.config.protocol;
    if let Some(idle) = idle_baseline(
        sensor.as_mut(),
        &sensor_info,
        protocol,
        &mut protocol_time,
        "runner:",
    )? {
        if manifest.idle_baseline.is_none() {
            manifest.idle_baseline = Some(idle.clone());
        }
        if let Some(session) = manifest.sessions.last_mut() {
            session.idle_baseline = Some(idle);
        }
        run_dir.write_manifest(&manifest)?;
    }
    if opts.resume {
        eprintln!(
            "runner: resuming {}: {already} of {} cells already recorded, {todo} to measure",
            run_dir.path.display(),
            prepared.plan.len(),
        );
    } else {
        eprintln!(
            "runner: {} cells on {} ({}), results in {}",
            prepared.plan.len(),
            selected.info.backend,
            selected.info.name,
            run_dir.path.display()
        );
    }

    let progress = progress_bar(todo);
    let mut store = ModelStore::default();
    // Plan order; earlier records first, so per-layer cells reconcile against them too.
    let mut records: Vec<CellRecord> = prepared
        .plan
        .iter()
        .filter_map(|c| earlier.get(&c.id).cloned())
        .collect();
    let session_idle = manifest
        .sessions
        .last()
        .and_then(|s| s.idle_baseline.as_ref())
        .map(|i| i.power_w);
    let mut stop = None;
    for &cell in &to_measure {
        if crate::interrupt::requested() {
            stop = Some(Stop::Interrupted);
            break;
        }
        progress.set_message(cell_label(cell));
        let check_overhead = sensor_info.measures_energy && manifest.sampler_overhead.is_none();
        let Some((mut record, trace, overhead)) = run_cell(
            cell,
            &prepared,
            &mut store,
            &selected,
            sensor.as_mut(),
            &sensor_info,
            session_idle,
            check_overhead,
            &progress,
        ) else {
            say(
                &progress,
                &format!(
                    "interrupted {}: dropped unfinished (measured again on resume)",
                    cell_label(cell)
                ),
            );
            stop = Some(Stop::Interrupted);
            break;
        };
        if let Some(o) = overhead {
            say(
                &progress,
                &format!(
                    "sampler overhead on cell {}: {:.3} ms without, {:.3} ms with the power sampler ({:+.2} %)",
                    o.cell_id, o.latency_off_ms, o.latency_on_ms, o.overhead * 100.0
                ),
            );
            manifest.sampler_overhead = Some(o);
            run_dir.write_manifest(&manifest)?;
        }
        record.reconciliation = analysis::reconcile_in(&record, &records);
        run_dir
            .write_record(&record)
            .with_context(|| format!("writing the record of cell {}", cell.id))?;
        if !record.layers.is_empty() {
            say(&progress, &layer_breakdown(&record));
        }
        if !trace.is_empty() {
            run_dir.write_trace(&cell.id, &trace)?;
        }
        say(&progress, &cell_result_line(&record));
        let failed = record.status == CellStatus::Failed;
        // A cell measured again replaces its earlier failed record.
        records.retain(|r| r.cell.id != record.cell.id);
        records.push(record);
        progress.inc(1);
        if failed {
            // A failed cell may have taken the device with it: ask before measuring on.
            if let Err(e) = device_health(&selected.device, sensor.as_ref()) {
                stop = Some(Stop::DeviceLost(format!(
                    "after cell {} failed, the device or its sensor stopped answering: {e:#}",
                    cell.id
                )));
                break;
            }
            if opts.fail_fast {
                stop = Some(Stop::FailFast(cell.id.clone()));
                break;
            }
            // Whatever the failed cell left cached (e.g. after running out of memory) goes.
            store = ModelStore::default();
        }
        protocol_time.add_cell(records.last().expect("just pushed"), protocol);
        let cooldown_started = std::time::Instant::now();
        RealClock::default().sleep_s(protocol.cooldown_s);
        protocol_time.cooldown_s += cooldown_started.elapsed().as_secs_f64();
    }
    progress.finish_and_clear();
    if stop.is_none() && crate::interrupt::requested() {
        stop = Some(Stop::Interrupted);
    }

    let complete = stop.is_none() && records.len() == prepared.plan.len();
    let now = now_rfc3339();
    if let Some(session) = manifest.sessions.last_mut() {
        session.ended_at = Some(now.clone());
        session.outcome = Some(stop.as_ref().map_or("completed", Stop::outcome).to_string());
    }
    manifest.ended_at = complete.then_some(now);
    run_dir.write_manifest(&manifest)?;
    let plan_position: std::collections::HashMap<&str, usize> = prepared
        .plan
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    records.sort_by_key(|r| plan_position.get(r.cell.id.as_str()).copied());
    let (written, summaries) =
        report::render_records(&run_dir, &prepared.templates, &manifest, &records)?;
    print_summary(&summaries);
    print_written(&written);
    let wall_s = started.elapsed().as_secs_f64();
    eprintln!("runner: {}", protocol_time.describe(wall_s));
    if let Some(session) = manifest.sessions.last_mut() {
        session.wall_s = Some(wall_s);
        session.protocol_s = Some(protocol_time.total_s());
    }
    run_dir.write_manifest(&manifest)?;
    list_unsuccessful(&summaries);

    let resume_hint = || {
        format!(
            "{} of {} cells are recorded in {}. Resume with:\n  {}",
            records.len(),
            prepared.plan.len(),
            run_dir.path.display(),
            resume_command(opts, &run_dir.path)
        )
    };
    let any_failed = summaries.iter().any(|s| s.status == CellStatus::Failed);
    match stop {
        Some(Stop::Interrupted) => {
            eprintln!("runner: interrupted. {}", resume_hint());
            Ok(exit::INTERRUPTED)
        }
        Some(Stop::FailFast(id)) => {
            eprintln!(
                "runner: stopped at the first failure (--fail-fast): cell {id}. {}",
                resume_hint()
            );
            Ok(exit::CELLS_FAILED)
        }
        Some(Stop::DeviceLost(why)) => {
            eprintln!(
                "runner: sweep ended: {why}. Once the device is back: {}",
                resume_hint()
            );
            Ok(exit::CELLS_FAILED)
        }
        None if any_failed => Ok(exit::CELLS_FAILED),
        None => Ok(exit::OK),
    }
}

/// The run directory this invocation writes, locked: a new one, or with `--resume` the earlier
/// run with its records (see [`reopen`]).
pub(crate) fn open_run(
    opts: &RunOptions,
    prepared: &Prepared,
    fresh: Manifest,
) -> Result<(RunDir, Manifest, BTreeMap<String, CellRecord>)> {
    if opts.resume {
        return reopen(opts, prepared, fresh);
    }
    let (dir, run_id) = RunDir::create(
        &opts.results_root,
        &prepared.exp.config.experiment.name,
        opts.out.as_deref(),
    )?;
    Ok((dir, Manifest { run_id, ..fresh }, BTreeMap::new()))
}

/// Reopens an earlier run for `--resume`: the latest run of this experiment, or `--out`, locked,
/// with its records; checks that it is a run of this experiment on this kind of device and that
/// every record still belongs to the plan. `--out` naming a folder without a run starts one there
/// (so every task of a job array can be started the same way).
fn reopen(
    opts: &RunOptions,
    prepared: &Prepared,
    fresh: Manifest,
) -> Result<(RunDir, Manifest, BTreeMap<String, CellRecord>)> {
    let name = &prepared.exp.config.experiment.name;
    let path = match &opts.out {
        Some(out) => out.clone(),
        None => RunDir::latest(&opts.results_root, name)?.ok_or_else(|| {
            ConfigError::new(format!(
                "--resume: no earlier run of experiment {name:?} under {}: start one without --resume",
                opts.results_root.join(name).display()
            ))
        })?,
    };
    if !path.join("manifest.json").exists() {
        let (dir, run_id) = RunDir::create(&opts.results_root, name, Some(&path))?;
        return Ok((dir, Manifest { run_id, ..fresh }, BTreeMap::new()));
    }
    let dir = RunDir::resume(&path)?;
    let old = dir.read_manifest()?;
    let here = path.display();
    if old.experiment != *name {
        return Err(ConfigError::new(format!(
            "--resume: {here} holds a run of experiment {:?}, not {name:?}",
            old.experiment
        ))
        .into());
    }
    if (&old.device.backend, &old.device.name) != (&fresh.device.backend, &fresh.device.name) {
        return Err(ConfigError::new(format!(
            "--resume: {here} was measured on {} ({}), this runner would measure on {} ({}): one run holds one kind of device's numbers; start a new run without --resume",
            old.device.name, old.device.backend, fresh.device.name, fresh.device.backend
        ))
        .into());
    }
    let records = dir.read_all_records()?;
    let strays: Vec<&str> = records
        .keys()
        .filter(|id| !prepared.plan.iter().any(|c| &c.id == *id))
        .map(String::as_str)
        .collect();
    if !strays.is_empty() {
        return Err(ConfigError::new(format!(
            "--resume: {here} has {} recorded cell(s) that {} no longer plans (cells/{}.json ...): the experiment, its weights, dataset or protocol changed since the run began (a cell id hashes them all); restore them, or start a new run without --resume",
            strays.len(),
            opts.file.display(),
            strays[0]
        ))
        .into());
    }
    // The run as a whole keeps its id, start, first idle baseline, sampler check and sessions;
    // the configuration is the one being completed.
    let mut notices = old.notices.clone();
    notices.extend(
        fresh
            .notices
            .iter()
            .filter(|n| !old.notices.contains(n))
            .cloned(),
    );
    let manifest = Manifest {
        run_id: old.run_id,
        started_at: old.started_at,
        idle_baseline: old.idle_baseline,
        sampler_overhead: old.sampler_overhead,
        sessions: old.sessions,
        gpu: old.gpu,
        notices,
        ..fresh
    };
    Ok((dir, manifest, records))
}

/// The device, its sensor, what the sensor measures, and the notices for the manifest.
type OpenedDevice = (
    SelectedDevice,
    Box<dyn EnergySensor>,
    SensorInfo,
    Vec<String>,
);

/// Opens the device the config names and its energy sensor, telling the user (prefixed with
/// `who`) about any fallback; returns them with the notices for the manifest.
fn open_device_and_sensor(prepared: &Prepared, who: &str) -> Result<OpenedDevice> {
    let selected = device::select(&prepared.exp.config.device)?;
    let mut notices = Vec::new();
    if let Some(n) = &selected.notice {
        eprintln!("{who} {n}");
        notices.push(n.clone());
    }
    let (sensor, fault_notice) =
        sensor::with_fault_injection(sensor::select(&prepared.exp.config.sensor, &selected.info)?);
    if let Some(n) = fault_notice {
        eprintln!("{who} {n}");
        notices.push(n);
    }
    let sensor_info = sensor.info();
    if !sensor_info.measures_energy && selected.notice.is_none() {
        eprintln!("{who} energy not measured: {}", sensor_info.note);
    }
    Ok((selected, sensor, sensor_info, notices))
}

/// The idle baseline of this session, when the sensor measures energy; `None` also when an
/// interrupt cut it short (an interrupted idle measurement is no baseline).
fn idle_baseline(
    sensor: &mut dyn EnergySensor,
    sensor_info: &SensorInfo,
    protocol: &ProtocolSection,
    protocol_time: &mut ProtocolTime,
    who: &str,
) -> Result<Option<crate::measure::IdleBaseline>> {
    if !sensor_info.measures_energy {
        return Ok(None);
    }
    eprintln!(
        "{who} idle baseline: {} s settling, then {} s of idle power",
        protocol.idle_settle_s, protocol.idle_baseline_s
    );
    let idle_started = std::time::Instant::now();
    let idle = measure::measure_idle(
        sensor,
        &RealClock::default(),
        protocol.idle_settle_s,
        protocol.idle_baseline_s,
    )
    .context("measuring the idle baseline")?;
    protocol_time.idle_s += idle_started.elapsed().as_secs_f64();
    if let Some(idle) = &idle {
        eprintln!(
            "{who} idle power {:.1} W ({} counter updates over {:.1} s)",
            idle.power_w, idle.counter_ticks, idle.duration_s
        );
    }
    Ok(idle.filter(|_| !crate::interrupt::requested()))
}

/// A Slurm array task's label (`slurm-<job>_<task>`), or `cell-<n>` outside Slurm.
fn task_label(n: usize) -> String {
    match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        (Ok(job), Ok(task)) => format!("slurm-{job}_{task}"),
        _ => format!("cell-{n}"),
    }
}

/// One worker of a run spread over several workers (a GPU of a multi-GPU run, or a Slurm array
/// task): measures its cells into the prepared run directory, claiming each (a per-cell lock) so
/// no cell is measured twice, skipping cells that already have a final record. It writes records
/// and its own session file, never the shared manifest or the reports.
fn run_worker(opts: &RunOptions, prepared: &Prepared, label: &str) -> Result<u8> {
    let started = std::time::Instant::now();
    let mut protocol_time = ProtocolTime::default();
    let who = format!("[{label}]");
    let out = opts.out.as_ref().ok_or_else(|| {
        ConfigError::new(
            "--cell-index, --cell and --worker measure into a prepared run: add --out DIR (the folder `runner slurm` prepared)",
        )
    })?;
    let run_dir = RunDir::open_shared(out).map_err(|e| ConfigError::new(format!("{e:#}")))?;
    let manifest = run_dir.read_manifest()?;
    if !matrix::same_cells(&manifest.plan, &prepared.plan) {
        return Err(ConfigError::new(format!(
            "{}: its plan ({} cells) is not what {} plans now ({} cells): the experiment, its overrides, weights, dataset or protocol changed since the run directory was prepared; prepare a new one",
            out.display(),
            manifest.plan.len(),
            opts.file.display(),
            prepared.plan.len()
        ))
        .into());
    }
    let cells: Vec<&Cell> = match &opts.cells {
        CellSelection::All => prepared.plan.iter().collect(),
        CellSelection::Index(i) => vec![prepared.plan.get(*i).ok_or_else(|| {
            ConfigError::new(format!(
                "--cell-index {i}: the plan of {} has {} cells (indices 0 to {})",
                opts.file.display(),
                prepared.plan.len(),
                prepared.plan.len().saturating_sub(1)
            ))
        })?],
        CellSelection::Ids(ids) => ids
            .iter()
            .map(|id| {
                prepared.plan.iter().find(|c| &c.id == id).ok_or_else(|| {
                    anyhow::Error::from(ConfigError::new(format!(
                        "--cell {id}: not a cell of {} (`runner plan {}` lists them)",
                        opts.file.display(),
                        opts.file.display()
                    )))
                })
            })
            .collect::<Result<_>>()?,
    };
    let (selected, mut sensor, sensor_info, _) = open_device_and_sensor(prepared, &who)?;
    crate::interrupt::install()?;
    let mut session = Session::begin(0);
    session.worker = Some(crate::results::WorkerInfo {
        label: label.to_string(),
        device: selected.info.clone(),
    });
    run_dir.write_worker_session(&session)?;
    let protocol = &prepared.exp.config.protocol;
    session.idle_baseline = idle_baseline(
        sensor.as_mut(),
        &sensor_info,
        protocol,
        &mut protocol_time,
        &who,
    )?;
    run_dir.write_worker_session(&session)?;
    let session_idle = session.idle_baseline.as_ref().map(|i| i.power_w);

    let is_final = |r: &CellRecord| r.status != CellStatus::Failed;
    let progress = ProgressBar::hidden();
    let mut store = ModelStore::default();
    let (mut stop, mut measured, mut any_failed) = (None, 0usize, false);
    for &cell in &cells {
        if crate::interrupt::requested() {
            stop = Some(Stop::Interrupted);
            break;
        }
        if run_dir.read_record(&cell.id)?.is_some_and(|r| is_final(&r)) {
            if cells.len() == 1 {
                eprintln!(
                    "{who} {} already has a record: nothing to do",
                    cell_label(cell)
                );
            }
            continue;
        }
        let Some(claim) = run_dir.try_claim(&cell.id)? else {
            continue; // another worker is measuring it
        };
        // Finished by another worker between the look and the claim.
        if run_dir.read_record(&cell.id)?.is_some_and(|r| is_final(&r)) {
            continue;
        }
        eprintln!("{who} measuring {}", cell_label(cell));
        let check_overhead = sensor_info.measures_energy && session.sampler_overhead.is_none();
        let Some((mut record, trace, overhead)) = run_cell(
            cell,
            prepared,
            &mut store,
            &selected,
            sensor.as_mut(),
            &sensor_info,
            session_idle,
            check_overhead,
            &progress,
        ) else {
            eprintln!(
                "{who} interrupted {}: dropped unfinished (measured again on resume)",
                cell_label(cell)
            );
            stop = Some(Stop::Interrupted);
            break;
        };
        record.worker = Some(label.to_string());
        if let Some(o) = overhead {
            session.sampler_overhead = Some(o);
            run_dir.write_worker_session(&session)?;
        }
        if record.cell.scope == Scope::Layers {
            let all: Vec<CellRecord> = run_dir.read_all_records()?.into_values().collect();
            record.reconciliation = analysis::reconcile_in(&record, &all);
        }
        run_dir
            .write_record(&record)
            .with_context(|| format!("writing the record of cell {}", cell.id))?;
        if !trace.is_empty() {
            run_dir.write_trace(&cell.id, &trace)?;
        }
        drop(claim);
        eprintln!("{who} {}", cell_result_line(&record));
        measured += 1;
        protocol_time.add_cell(&record, protocol);
        if record.status == CellStatus::Failed {
            any_failed = true;
            if let Err(e) = device_health(&selected.device, sensor.as_ref()) {
                stop = Some(Stop::DeviceLost(format!(
                    "after cell {} failed, the device or its sensor stopped answering: {e:#}",
                    cell.id
                )));
                break;
            }
            if opts.fail_fast {
                stop = Some(Stop::FailFast(cell.id.clone()));
                break;
            }
            store = ModelStore::default();
        }
        let cooldown_started = std::time::Instant::now();
        RealClock::default().sleep_s(protocol.cooldown_s);
        protocol_time.cooldown_s += cooldown_started.elapsed().as_secs_f64();
    }
    if stop.is_none() && crate::interrupt::requested() {
        stop = Some(Stop::Interrupted);
    }
    let wall_s = started.elapsed().as_secs_f64();
    session.ended_at = Some(now_rfc3339());
    session.outcome = Some(stop.as_ref().map_or("completed", Stop::outcome).to_string());
    session.wall_s = Some(wall_s);
    session.protocol_s = Some(protocol_time.total_s());
    run_dir.write_worker_session(&session)?;
    eprintln!(
        "{who} {measured} cell(s) measured on {} ({}); {}",
        selected.info.name,
        selected.info.backend,
        protocol_time.describe(wall_s)
    );
    Ok(match stop {
        Some(Stop::Interrupted) => exit::INTERRUPTED,
        Some(Stop::DeviceLost(why)) => {
            eprintln!("{who} stopped: {why}");
            exit::CELLS_FAILED
        }
        Some(Stop::FailFast(_)) => exit::CELLS_FAILED,
        None if any_failed => exit::CELLS_FAILED,
        None => exit::OK,
    })
}

/// The command that completes this run: same file, overrides and templates, `--resume --out`.
pub(crate) fn resume_command(opts: &RunOptions, dir: &Path) -> String {
    let mut extra = Vec::new();
    if let Some(t) = &opts.templates {
        extra.extend(["--templates".to_string(), t.display().to_string()]);
    }
    if opts.fail_fast {
        extra.push("--fail-fast".to_string());
    }
    report::resume_command(
        &opts.file.display().to_string(),
        dir,
        &opts.overrides,
        &extra,
    )
}

/// A failed cell's reason as recorded: the error chain, with what to do for the failures a user
/// can act on.
fn failure_reason(cell: &Cell, err: &anyhow::Error) -> String {
    // candle attaches a captured backtrace to some errors ("   0: <unknown>" lines in a stripped
    // binary): noise in a record and a report, so only the message is kept.
    let full = format!("{err:#}");
    let is_frame = |line: &str| {
        let t = line.trim_start();
        t.starts_with("at ")
            || t.split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let text = full
        .lines()
        .filter(|l| !is_frame(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    if text.contains("CUDA_ERROR_OUT_OF_MEMORY") || text.contains("out of memory") {
        format!(
            "GPU out of memory at batch {} seq {} ({text}): use a smaller batch_size or seq_len for this cell; the other cells are unaffected",
            cell.batch_size, cell.seq_len
        )
    } else {
        text
    }
}

/// Time the measurement protocol itself took in this session, as configured: what a sweep's wall
/// time is compared against to give the runner's overhead (model loading, tokenizing, fidelity and
/// probe passes, the sampler check, writing records and reports all count as overhead).
#[derive(Debug, Default)]
struct ProtocolTime {
    idle_s: f64,
    warmup_s: f64,
    stabilize_s: f64,
    windows_s: f64,
    cooldown_s: f64,
}

impl ProtocolTime {
    fn add_cell(&mut self, record: &CellRecord, protocol: &ProtocolSection) {
        let mut add = |warmup: Option<&crate::measure::WarmupRecord>,
                       windows: &[crate::measure::WindowRecord]| {
            if let Some(w) = warmup {
                self.warmup_s += w.duration_s;
                self.stabilize_s += protocol.stabilize_s;
            }
            self.windows_s += windows.iter().map(|w| w.duration_s).sum::<f64>();
        };
        add(record.warmup.as_ref(), &record.windows);
        for layer in &record.layers {
            add(Some(&layer.warmup), &layer.windows);
        }
    }

    fn total_s(&self) -> f64 {
        self.idle_s + self.warmup_s + self.stabilize_s + self.windows_s + self.cooldown_s
    }

    fn describe(&self, wall_s: f64) -> String {
        let total = self.total_s();
        let ratio = if total > 0.0 {
            format!("{:.2}x", wall_s / total)
        } else {
            "n/a (nothing measured)".to_string()
        };
        format!(
            "wall time {wall_s:.1} s; measurement protocol {total:.1} s (windows {:.1} s, warm-up {:.1} s, stabilization {:.1} s, idle baseline {:.1} s, cool-down {:.1} s); wall / protocol = {ratio}",
            self.windows_s, self.warmup_s, self.stabilize_s, self.idle_s, self.cooldown_s
        )
    }
}

/// The device still computes and its sensor still reads.
fn device_health(device: &Device, sensor: &dyn EnergySensor) -> Result<()> {
    let probe = Tensor::ones(4, DType::F32, device)?.sum_all()?;
    probe.to_scalar::<f32>()?;
    device.synchronize()?;
    sensor.health_check()
}

pub(crate) fn list_unsuccessful(summaries: &[CellSummary]) {
    for (status, title) in [
        (CellStatus::Failed, "failed"),
        (CellStatus::Skipped, "skipped"),
    ] {
        let cells: Vec<&CellSummary> = summaries.iter().filter(|s| s.status == status).collect();
        if cells.is_empty() {
            continue;
        }
        eprintln!("{} cell(s) {title}:", cells.len());
        for s in cells {
            eprintln!(
                "  {} {} {} batch {} seq {}: {}",
                s.id,
                s.model,
                s.precision,
                s.batch_size,
                s.seq_len,
                s.reason.as_deref().unwrap_or("")
            );
        }
    }
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

/// Re-renders the reports of a finished or partial run from its stored records.
pub fn report(dir: &Path, templates: Option<&Path>) -> Result<()> {
    let templates = TemplateSource::resolve(templates)?;
    let run_dir = RunDir::open(dir)?;
    let (written, summaries) = report::render(&run_dir, &templates)?;
    print_summary(&summaries);
    print_written(&written);
    Ok(())
}

/// A cell's record, power trace and (on the first cell) the sampler-overhead check; `None` when
/// an interrupt stopped it before it finished.
type CellOutcome = Option<(
    CellRecord,
    Vec<sensor::PowerSample>,
    Option<SamplerOverhead>,
)>;

#[allow(clippy::too_many_arguments)]
fn run_cell(
    cell: &Cell,
    prepared: &Prepared,
    store: &mut ModelStore,
    selected: &SelectedDevice,
    sensor: &mut dyn EnergySensor,
    sensor_info: &SensorInfo,
    idle_power_w: Option<f64>,
    check_overhead: bool,
    progress: &ProgressBar,
) -> CellOutcome {
    let device = &selected.device;
    let mut record = CellRecord {
        schema_version: SCHEMA_VERSION,
        cell: cell.clone(),
        status: CellStatus::Ok,
        reason: None,
        precision_executed: None,
        implementation: None,
        worker: None,
        device: selected.info.clone(),
        sensor: sensor_info.clone(),
        protocol: prepared.exp.config.protocol.clone(),
        idle_power_w,
        gpu_before: sensor.gpu_state(),
        gpu_after: None,
        warmup: None,
        windows: Vec::new(),
        layers: Vec::new(),
        reconciliation: None,
        fidelity: None,
        accuracy: None,
        dataset: None,
        truncated_examples: None,
        started_at: now_rfc3339(),
        ended_at: String::new(),
    };
    let mut trace = Vec::new();
    let mut overhead = None;
    let preset = &prepared.specs[&cell.model].preset;
    if let Err(unsupported) = model::probe_precision(cell.precision, preset, device) {
        (record.status, record.reason) = match unsupported {
            model::Unsupported::Shape(why) => (CellStatus::Skipped, Some(why)),
            model::Unsupported::Device(why) => (CellStatus::Failed, Some(why)),
        };
    } else {
        let label = cell_label(cell);
        let mut on_progress = |phase: &str| progress.set_message(format!("{label}: {phase}"));
        let measured = measure_cell(
            cell,
            prepared,
            store,
            device,
            sensor,
            check_overhead,
            &mut on_progress,
            &mut record,
        );
        match measured {
            Ok((t, o)) => (trace, overhead) = (t, o),
            Err(e) if crate::interrupt::is_interrupt(&e) => return None,
            Err(e) => {
                record.status = CellStatus::Failed;
                record.reason = Some(failure_reason(cell, &e));
            }
        }
    }
    record.gpu_after = sensor.gpu_state();
    record.ended_at = now_rfc3339();
    Some((record, trace, overhead))
}

#[allow(clippy::too_many_arguments)]
fn measure_cell(
    cell: &Cell,
    prepared: &Prepared,
    store: &mut ModelStore,
    device: &Device,
    sensor: &mut dyn EnergySensor,
    check_overhead: bool,
    on_progress: &mut dyn FnMut(&str),
    record: &mut CellRecord,
) -> Result<(Vec<sensor::PowerSample>, Option<SamplerOverhead>)> {
    let spec = &prepared.specs[&cell.model];
    let set = &prepared.tokenized[&cell.seq_len];
    let probe = match &spec.probe {
        Some(settings) => {
            let key = (cell.model.clone(), cell.seq_len);
            if !store.probes.contains_key(&key) {
                crate::interrupt::check()?;
                on_progress("training the linear probe on fp32 features");
                let features = store.load(spec, Precision::Fp32, device)?;
                let head = probe::train_head(&features, set, settings, spec.seed, device)
                    .with_context(|| format!("models.{}: training the probe head", cell.model))?;
                store.probes.insert(key.clone(), head);
            }
            Some(store.probes[&key].clone())
        }
        None => None,
    };
    crate::interrupt::check()?;
    on_progress("loading model");
    let model = match &probe {
        Some(head) => store.load_with_probe(spec, cell.precision, device, head)?,
        None => store.load(spec, cell.precision, device)?,
    };
    record.precision_executed = Some(model.executed_precision());
    record.implementation = Some(model.implementation());
    record.truncated_examples = Some(set.truncated);
    let clock = RealClock::default();
    let protocol = &prepared.exp.config.protocol;
    if cell.scope == Scope::Layers {
        // Every loop of a layers cell reuses one captured batch.
        let mut batches = BatchCycle::with_at_most(set, cell.batch_size, device, 1)?;
        let (ids, mask) = batches.next_batch().clone();
        record.dataset = Some(batches.usage());
        let trace = measure_layers(
            &model,
            &ids,
            &mask,
            protocol,
            sensor,
            &clock,
            on_progress,
            record,
        )?;
        return Ok((trace, None));
    }
    let mut batches = BatchCycle::new(set, cell.batch_size, device)?;
    let mut last = None;
    let (outcome, overhead) = {
        let mut run_loop = || -> Result<()> {
            let (ids, mask) = batches.next_batch();
            let logits = model.forward(ids, mask)?;
            device.synchronize()?;
            last = Some((logits, ids.clone(), mask.clone()));
            Ok(())
        };
        let outcome = measure::run_protocol(protocol, sensor, &clock, on_progress, &mut run_loop)?;
        // Once per sweep, on the first measured cell: what the power sampler costs.
        let overhead = if check_overhead {
            on_progress("sampler overhead check");
            measure::measure_sampler_overhead(&cell.id, protocol, sensor, &clock, &mut run_loop)?
        } else {
            None
        };
        (outcome, overhead)
    };
    record.dataset = Some(batches.usage());
    if let Some((logits, ids, mask)) = last {
        // The last measured batch again, checking the encoder's output too (a ReLU pooler would
        // hide NaN in finite logits), and on failure re-run layer by layer to say where.
        let checked = ensure_finite(&logits, "the logits")
            .and_then(|_| Ok(model.forward_checked(&ids, &mask)?));
        if let Err(e) = checked {
            let place = locate_non_finite(&model, &ids, &mask).ok().flatten();
            anyhow::bail!(
                "the model in {} produced NaN or infinite values ({e}){}",
                cell.precision.name(),
                place.map(|p| format!("; {p}")).unwrap_or_default()
            );
        }
    }
    if cell.precision != Precision::Fp32 {
        crate::interrupt::check()?;
        on_progress("fidelity against fp32");
        let n = fidelity::FIDELITY_EXAMPLES;
        let candidate = fidelity::logits(&model, set, n, cell.batch_size, device)?;
        let key = (cell.model.clone(), cell.seq_len);
        if !store.references.contains_key(&key) {
            let reference_model = match &probe {
                Some(head) => store.load_with_probe(spec, Precision::Fp32, device, head)?,
                None => store.load(spec, Precision::Fp32, device)?,
            };
            let logits = fidelity::logits(&reference_model, set, n, cell.batch_size, device)?;
            store.references.insert(key.clone(), logits);
        }
        record.fidelity = Some(fidelity::compare(
            "fp32",
            &store.references[&key],
            &candidate,
        ));
    }
    if let Some(head) = &probe {
        crate::interrupt::check()?;
        on_progress("accuracy on the probe's test split");
        record.accuracy = Some(probe::accuracy(&model, set, head, cell.batch_size, device)?);
    }
    record.warmup = Some(outcome.warmup);
    record.windows = outcome.windows;
    Ok((outcome.trace, overhead))
}

/// A `layers` cell: one forward pass captures every layer's and component's real input, then each
/// runs alone through the full protocol (warm-up, windows, repeats) in its own energy windows.
#[allow(clippy::too_many_arguments)]
fn measure_layers(
    model: &Encoder,
    ids: &Tensor,
    mask: &Tensor,
    protocol: &ProtocolSection,
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    on_progress: &mut dyn FnMut(&str),
    record: &mut CellRecord,
) -> Result<Vec<sensor::PowerSample>> {
    let device = model.device().clone();
    let units = model.capture_units(ids, mask)?;
    device.synchronize()?;
    let mut trace = Vec::new();
    let mut offset = 0.0;
    for (index, captured) in units.iter().enumerate() {
        let name = captured.unit.name();
        let mut last = None;
        let mut run_loop = || -> Result<()> {
            let out = model.forward_unit(captured)?;
            device.synchronize()?;
            last = Some(out);
            Ok(())
        };
        let mut progress =
            |phase: &str| on_progress(&format!("{}/{} {name}: {phase}", index + 1, units.len()));
        let outcome = measure::run_protocol(protocol, sensor, clock, &mut progress, &mut run_loop)
            .with_context(|| format!("layer {name}"))?;
        if let Some(out) = last {
            ensure_finite(&out, &format!("layer {name}"))?;
        }
        // One trace for the cell: each layer's samples after the previous layer's.
        let end = outcome.trace.iter().map(|s| s.t_s).fold(0.0, f64::max);
        trace.extend(outcome.trace.iter().map(|s| sensor::PowerSample {
            t_s: s.t_s + offset,
            power_w: s.power_w,
        }));
        offset += end;
        record.layers.push(LayerRecord {
            name,
            index,
            parent: captured.unit.parent(),
            warmup: outcome.warmup,
            windows: outcome.windows,
        });
    }
    Ok(trace)
}

/// Refuses NaN or infinite outputs: a model that computes garbage fast is not a measurement.
fn ensure_finite(t: &Tensor, what: &str) -> Result<()> {
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    anyhow::ensure!(
        values.iter().all(|v| v.is_finite()),
        "{what} produced NaN or infinite values"
    );
    Ok(())
}

/// The first layer (and inside a block, the first component) whose output holds NaN or infinite
/// values for this batch, with the largest finite magnitudes of its input and output: values near
/// 65504 point to an fp16 overflow.
fn locate_non_finite(model: &Encoder, ids: &Tensor, mask: &Tensor) -> Result<Option<String>> {
    let units = model.capture_units(ids, mask)?;
    let magnitude = |t: &Tensor| -> Result<(usize, f32)> {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        let largest = v
            .iter()
            .filter(|x| x.is_finite())
            .fold(0f32, |a, x| a.max(x.abs()));
        Ok((bad, largest))
    };
    let mut culprit = None;
    for (i, u) in units.iter().enumerate() {
        let (bad, largest) = magnitude(&model.forward_unit(u)?)?;
        if bad == 0 {
            continue;
        }
        let is_block = matches!(u.unit, model::Unit::Layer(model::Layer::Block(_)));
        if culprit.is_none() || !is_block {
            culprit = Some((i, bad, largest));
        }
        // A block: look on among its components for the first one that breaks.
        if !is_block {
            break;
        }
    }
    let Some((i, bad, out_largest)) = culprit else {
        return Ok(None);
    };
    let u = &units[i];
    let (_, in_largest) = magnitude(&u.input)?;
    Ok(Some(format!(
        "first non-finite output: {} ({bad} values; largest finite |value| of its input {in_largest:.4e}, of its output {out_largest:.4e})",
        u.unit.name()
    )))
}

/// The console breakdown printed when a `layers` cell ends (energy where measured, else latency).
fn layer_breakdown(r: &CellRecord) -> String {
    let totals = analysis::layer_totals(r);
    let energy = totals.energy_per_inference_mj.is_some();
    let (title, unit, total) = if energy {
        (
            "ENERGY",
            "mJ",
            totals.energy_per_inference_mj.unwrap_or_default(),
        )
    } else {
        ("LATENCY", "ms", totals.latency_ms)
    };
    let mut out = format!(
        "{title} BREAKDOWN BY LAYER  ({} {} batch {} seq {}; {})\n",
        r.cell.id,
        r.cell.precision.name(),
        r.cell.batch_size,
        r.cell.seq_len,
        if energy {
            "per inference"
        } else {
            "per batch; energy not measured"
        }
    );
    for l in &r.layers {
        let s = analysis::window_stats(&l.windows, r.cell.batch_size, r.idle_power_w);
        let value = if energy {
            s.energy_per_inference_mj
        } else {
            s.latency_median_ms
        };
        let value = value.unwrap_or(f64::NAN);
        // Components are indented under their block, in the same columns.
        let label = match &l.parent {
            Some(_) => format!("  {}", l.name.rsplit('.').next().unwrap_or(&l.name)),
            None => l.name.clone(),
        };
        out.push_str(&format!(
            "  {label:<25}: {value:>9.3} {unit} ({:>6.2}%)\n",
            value / total * 100.0
        ));
    }
    let whole = r.reconciliation.as_ref().map(|rec| {
        let (w, ratio) = if energy {
            (rec.whole_energy_per_inference_mj, rec.energy_ratio)
        } else {
            (Some(rec.whole_latency_ms), Some(rec.latency_ratio))
        };
        format!(
            "   whole model: {:.3} {unit} (Σ/whole {:.1}%)",
            w.unwrap_or(f64::NAN),
            ratio.unwrap_or(f64::NAN) * 100.0
        )
    });
    out.push_str(&format!(
        "  {:<25}: {total:>9.3} {unit} (100.00%){}",
        "TOTAL",
        whole.unwrap_or_default()
    ));
    out
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "fp32",
        DType::F16 => "fp16",
        DType::BF16 => "bf16",
        DType::F64 => "fp64",
        _ => "other",
    }
}

fn cell_label(cell: &Cell) -> String {
    format!(
        "{} {} {} b{} s{}",
        cell.id,
        cell.model,
        cell.precision.name(),
        cell.batch_size,
        cell.seq_len
    )
}

fn cell_result_line(r: &CellRecord) -> String {
    let label = cell_label(&r.cell);
    match r.status {
        CellStatus::Ok => {
            let s = crate::analysis::summarize(r);
            format!(
                "done    {label}: {:.3} ms/batch, {:.1} samples/s{}",
                s.latency_per_loop_ms.unwrap_or(f64::NAN),
                s.throughput_samples_per_s.unwrap_or(f64::NAN),
                s.energy_per_inference_mj
                    .map(|e| format!(", {e:.2} mJ/inference"))
                    .unwrap_or_default()
            )
        }
        CellStatus::Skipped => format!(
            "skipped {label}: {}",
            r.reason.as_deref().unwrap_or_default()
        ),
        CellStatus::Failed => format!(
            "FAILED  {label}: {}",
            r.reason.as_deref().unwrap_or_default()
        ),
    }
}

fn progress_bar(cells: usize) -> ProgressBar {
    let bar = ProgressBar::new(cells as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cells, ETA {eta}  {wide_msg}",
        )
        .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A line for the user that does not tear the progress bar (and still appears without a TTY).
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn print_written(written: &report::Written) {
    println!("report: {}", written.html.display());
    println!("        {}", written.markdown.display());
    println!("        {}", written.summary_csv.display());
}

fn print_summary(summaries: &[CellSummary]) {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "cell",
        "model",
        "precision",
        "batch",
        "seq",
        "status",
        "ms/batch [95% CI]",
        "samples/s",
        "mJ/inference",
    ]);
    let opt = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    for s in summaries {
        let latency = match (
            s.latency_per_loop_ms,
            s.latency_ci_low_ms,
            s.latency_ci_high_ms,
        ) {
            (Some(m), Some(lo), Some(hi)) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
            (m, _, _) => opt(m, 3),
        };
        table.add_row(vec![
            s.id.clone(),
            s.model.clone(),
            s.precision.clone(),
            s.batch_size.to_string(),
            s.seq_len.to_string(),
            match s.status {
                CellStatus::Ok => "ok".to_string(),
                CellStatus::Skipped => "skipped".to_string(),
                CellStatus::Failed => "FAILED".to_string(),
            },
            latency,
            opt(s.throughput_samples_per_s, 1),
            opt(s.energy_per_inference_mj, 2),
        ]);
    }
    println!("{table}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> Cell {
        Cell {
            id: "0123456789ab".into(),
            model: "m".into(),
            precision: Precision::Fp16,
            batch_size: 131072,
            seq_len: 512,
            scope: Scope::Model,
        }
    }

    #[test]
    fn out_of_memory_says_which_shape_and_what_to_do() {
        // The text candle returned on the H100 for batch 131072 x seq 512.
        let err = anyhow::anyhow!("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
        assert_eq!(
            failure_reason(&cell(), &err),
            "GPU out of memory at batch 131072 seq 512 (DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")): use a smaller batch_size or seq_len for this cell; the other cells are unaffected"
        );
        let with_backtrace = anyhow::anyhow!(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")\n   0: <unknown>\n   1: <unknown>\n      at src/x.rs:3\n "
        );
        assert_eq!(
            failure_reason(&cell(), &with_backtrace),
            failure_reason(&cell(), &err)
        );
        let other = anyhow::anyhow!("the logits produced NaN or infinite values");
        assert_eq!(
            failure_reason(&cell(), &other),
            "the logits produced NaN or infinite values"
        );
    }

    #[test]
    fn resume_command_repeats_the_overrides_quoted_for_a_shell() {
        let opts = RunOptions {
            file: PathBuf::from("experiments/x.toml"),
            out: None,
            overrides: vec![
                "matrix.batch_size=[8, 16]".into(),
                "protocol.repeats=5".into(),
            ],
            templates: None,
            results_root: PathBuf::from("results"),
            resume: false,
            fail_fast: true,
            cells: CellSelection::All,
            worker: None,
        };
        assert_eq!(
            resume_command(&opts, Path::new("results/x/20261124T000000Z")),
            "runner run experiments/x.toml --resume --out results/x/20261124T000000Z --set 'matrix.batch_size=[8, 16]' --set protocol.repeats=5 --fail-fast"
        );
    }
}
