//! One worker of a run spread over several (a GPU of a multi-GPU run, a Slurm array task): the
//! same loop as `serial.rs`, but into a run directory another process prepared, claiming each
//! cell (a per-cell lock) so that no cell is measured twice, and writing its own session file,
//! never the shared manifest or the reports.

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use super::cell::{run_cell, Store};
use super::console::{cell_label, cell_result_line};
use super::serial::{device_health, idle_baseline, open_device_and_sensor, ProtocolTime, Stop};
use super::{CellSelection, Prepared, RunOptions};
use crate::analysis;
use crate::config::Scope;
use crate::error::{exit, ConfigError};
use crate::matrix::{self, Cell};
use crate::measure::{Clock, RealClock};
use crate::results::{now_rfc3339, CellRecord, CellStatus, RunDir, Session};

/// The label this invocation measures under when it is one worker of a spread-out run: the
/// coordinator's `--worker` label, or a Slurm array task's (`--cell-index`, `--cell`); `None` for
/// an ordinary run.
pub fn worker_label(opts: &RunOptions) -> Option<String> {
    match (&opts.worker, &opts.cells) {
        (Some(label), _) => Some(label.clone()),
        (None, CellSelection::All) => None,
        (None, CellSelection::Index(i)) => Some(task_label(*i)),
        (None, CellSelection::Ids(_)) => Some(task_label(std::process::id() as usize)),
    }
}

/// A worker label becomes part of a file name (`sessions/<label>-<pid>.json`): like a cell id it
/// may hold only ASCII letters, digits, `-` and `_` (no `/`, no `..`), at most 64 of them.
pub fn check_label(label: &str) -> Result<(), ConfigError> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "worker label {label:?} (from --worker, or SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID) may hold only ASCII letters, digits, '-' and '_', at most 64: it names files in the run directory"
        )))
    }
}

/// Why this worker's host counters (RAPL) belong to no one cell, when other workers may measure
/// on the same host at the same time: the GPUs of `device.gpus`, the CPU workers, or the tasks
/// of a Slurm array (which Slurm may place on one node).
fn shared_host(opts: &RunOptions, device: &crate::config::DeviceSection) -> Option<String> {
    use crate::config::GpuSet;
    match (&opts.worker, &device.gpus) {
        (Some(_), Some(GpuSet::List(list))) if list.len() == 1 => None,
        (Some(_), Some(_)) => {
            Some("the workers of device.gpus measure on this host at once".into())
        }
        (Some(_), None) if device.cpu_workers > 1 => Some(format!(
            "the {} CPU workers measure on this host at once",
            device.cpu_workers
        )),
        (Some(_), None) => None,
        (None, _) => Some("tasks of one Slurm array may measure on one node at once".into()),
    }
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
pub fn run_worker(opts: &RunOptions, prepared: &Prepared, label: &str) -> Result<u8> {
    check_label(label)?;
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
    if manifest.build() != crate::results::this_build() {
        return Err(ConfigError::new(format!(
            "{}: prepared by {}; this is {}: {}; measure its cells with the binary that prepared it, or prepare a new run",
            out.display(),
            manifest.build(),
            crate::results::this_build(),
            super::resume::ONE_BUILD
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
    let shared = shared_host(opts, &prepared.exp.config.device);
    let (selected, mut sensor, sensor_info, _) =
        open_device_and_sensor(prepared, &who, shared.as_deref())?;
    let all: Vec<&crate::matrix::Cell> = prepared.plan.iter().collect();
    super::generate::check_memory(prepared, &all, &selected.device)?;
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
    let session_idle = session.idle_baseline.clone();

    let is_final = |r: &CellRecord| r.status != CellStatus::Failed;
    let progress = ProgressBar::hidden();
    let mut store = Store::default();
    let (mut stop, mut measured, mut any_failed) = (None, 0usize, false);
    for &cell in &cells {
        if crate::interrupt::requested() {
            stop = Some(Stop::Interrupted);
            break;
        }
        if run_dir
            .read_record(cell, protocol)?
            .is_some_and(|r| is_final(&r))
        {
            if cells.len() == 1 {
                tell!(
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
        if run_dir
            .read_record(cell, protocol)?
            .is_some_and(|r| is_final(&r))
        {
            continue;
        }
        tell!("{who} measuring {}", cell_label(cell));
        let check_overhead = sensor_info.measures_energy && session.sampler_overhead.is_none();
        // A top:K cell ranks layers by a layers cell another worker may have measured.
        let earlier: Vec<CellRecord> =
            if matches!(cell.quantize, crate::config::QuantizeSelection::Top(_)) {
                run_dir.read_records(&manifest)?
            } else {
                Vec::new()
            };
        let Some((mut record, trace, overhead)) = run_cell(
            cell,
            prepared,
            &mut store,
            &selected,
            sensor.as_mut(),
            &sensor_info,
            session_idle.as_ref(),
            check_overhead,
            &progress,
            &earlier,
        ) else {
            tell!(
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
            let all: Vec<CellRecord> = run_dir.read_records(&manifest)?;
            record.reconciliation = analysis::reconcile_in(&record, &all);
        }
        run_dir
            .write_record(&record)
            .with_context(|| format!("writing the record of cell {}", cell.id))?;
        if !trace.is_empty() {
            run_dir.write_trace(&cell.id, &trace)?;
        }
        drop(claim);
        tell!("{who} {}", cell_result_line(&record));
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
            store = Store::default();
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
    tell!(
        "{who} {measured} cell(s) measured on {} ({}); {}",
        selected.info.name,
        selected.info.backend,
        protocol_time.describe(wall_s)
    );
    Ok(match stop {
        Some(Stop::Interrupted) => exit::INTERRUPTED,
        Some(Stop::DeviceLost(why)) => {
            tell!("{who} stopped: {why}");
            exit::CELLS_FAILED
        }
        Some(Stop::FailFast(_)) => exit::CELLS_FAILED,
        None if any_failed => exit::CELLS_FAILED,
        None => exit::OK,
    })
}
