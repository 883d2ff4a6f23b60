//! The loop over a run's cells on one device: the run directory opened (or resumed), the idle
//! baseline, then each cell measured and its record written the moment it ends; after a failed
//! cell the device is asked whether it still answers; an interrupt stops after the current
//! window. Then the manifest closed, the reports rendered, the summary printed.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

use super::cell::{run_cell, Store};
use super::console::{
    cell_label, cell_result_line, layer_breakdown, list_unsuccessful, print_summary, print_written,
    say, Progress,
};
use super::estimate::{Estimate, RunCost};
use super::protocol_time::WindowFloor;
use super::resume::{open_run, resume_command};
use super::{Prepared, RunOptions};
use crate::analysis;
use crate::config::ProtocolSection;
use crate::device::{self, SelectedDevice};
use crate::error::exit;
use crate::matrix::Cell;
use crate::measure::{self, Clock, RealClock};
use crate::report::{self, ContinueCommand};
use crate::results::{now_rfc3339, CellRecord, CellStatus, Manifest, Session};
use crate::sensor::{self, EnergySensor, SensorInfo};

/// Why a sweep ended before its last cell.
pub(super) enum Stop {
    Interrupted,
    FailFast(String),
    /// The device or its sensor stopped answering: measuring on would only record failures.
    DeviceLost(String),
}

impl Stop {
    /// The session outcome recorded for it.
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Stop::Interrupted if crate::interrupt::hung_up() => {
                "interrupted (SIGHUP: the terminal closed)"
            }
            Stop::Interrupted => "interrupted",
            Stop::FailFast(_) => "stopped at the first failure (--fail-fast)",
            Stop::DeviceLost(_) => "device lost",
        }
    }
}

/// Runs an experiment's cells one after another on one device; returns the exit code (0 all
/// cells succeeded, 1 some failed, 130 interrupted). `started` is when the invocation began:
/// everything from there to the last report counts as wall time; only the protocol's own waiting
/// and measuring (idle baseline, warm-up, stabilization, windows, cool-down) does not count as the
/// runner's overhead. `continue_command` gives the command a partial run's report shows.
pub fn run_serial(
    opts: &RunOptions,
    prepared: &Prepared,
    started: std::time::Instant,
    continue_command: ContinueCommand<'_>,
) -> Result<u8> {
    let mut protocol_time = ProtocolTime::default();
    let (selected, mut sensor, sensor_info, notices) =
        open_device_and_sensor(prepared, "runner:", None)?;
    // Decoders too large for this device are refused before the run directory exists.
    let all: Vec<&Cell> = prepared.plan.iter().collect();
    super::generate::check_memory(prepared, &all, &selected.device)?;

    let fresh = Manifest::new(
        &prepared.exp,
        "",
        &prepared.plan,
        &selected.info,
        &sensor_info,
        sensor.gpu_state(),
        notices,
    )?;
    let (run_dir, mut manifest, earlier) = open_run(opts, prepared, fresh)?;
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
        tell!(
            "runner: resuming {}: {already} of {} cells already recorded, {todo} to measure",
            run_dir.path.display(),
            prepared.plan.len(),
        );
    } else {
        tell!(
            "runner: {} cells on {} ({}), results in {}",
            prepared.plan.len(),
            selected.info.backend,
            selected.info.name,
            run_dir.path.display()
        );
    }
    // What the sensor adds to every window, from the counter's interval the idle baseline saw.
    let floor = WindowFloor::of_run(
        &sensor_info,
        manifest
            .sessions
            .last()
            .and_then(|s| s.idle_baseline.as_ref()),
    );
    tell!(
        "runner: {}",
        super::plan::lower_bound_line(prepared, &to_measure, Some(floor))
    );
    let estimate = estimate_run(prepared, &selected.device, &to_measure, floor)?;
    tell!(
        "runner: estimated ~{} for {todo} cell(s), from {}; refined as cells finish",
        super::plan::human_duration(estimate.initial_s),
        estimate.basis
    );
    if let Some(session) = manifest.sessions.last_mut() {
        session.estimated_s = Some(estimate.initial_s);
    }

    let progress = Progress::new(todo, estimate);
    let mut store = Store::default();
    // Plan order; earlier records first, so per-layer cells reconcile against them too.
    let mut records: Vec<CellRecord> = prepared
        .plan
        .iter()
        .filter_map(|c| earlier.get(&c.id).cloned())
        .collect();
    let session_idle = manifest
        .sessions
        .last()
        .and_then(|s| s.idle_baseline.clone());
    let mut stop = None;
    let cells_started = std::time::Instant::now();
    for (i, &cell) in to_measure.iter().enumerate() {
        if crate::interrupt::requested() {
            stop = Some(Stop::Interrupted);
            break;
        }
        progress.start_cell(i, &cell_label(cell));
        let check_overhead = sensor_info.measures_energy && manifest.sampler_overhead.is_none();
        let Some((mut record, trace, overhead)) = run_cell(
            cell,
            prepared,
            &mut store,
            &selected,
            sensor.as_mut(),
            &sensor_info,
            session_idle.as_ref(),
            check_overhead,
            &progress.bar,
            &records,
        ) else {
            say(
                &progress.bar,
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
                &progress.bar,
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
        if !record.layers.is_empty() || !record.prefixes.is_empty() {
            say(&progress.bar, &layer_breakdown(&record));
        }
        if !trace.is_empty() {
            run_dir.write_trace(&cell.id, &trace)?;
        }
        say(&progress.bar, &cell_result_line(&record));
        progress.finish_cell(i);
        let failed = record.status == CellStatus::Failed;
        // A cell measured again replaces its earlier failed record.
        records.retain(|r| r.cell.id != record.cell.id);
        records.push(record);
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
            store = Store::default();
        }
        protocol_time.add_cell(records.last().expect("just pushed"), protocol);
        let cooldown_started = std::time::Instant::now();
        RealClock::default().sleep_s(protocol.cooldown_s);
        protocol_time.cooldown_s += cooldown_started.elapsed().as_secs_f64();
    }
    let estimated_s = progress.initial_estimate_s();
    let cells_s = cells_started.elapsed().as_secs_f64();
    progress.finish();
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
    let (written, summaries) = report::render_records(
        &run_dir,
        &prepared.templates,
        &manifest,
        &records,
        continue_command,
    )
    .with_context(|| crate::report::render_failed_hint(&run_dir.path))?;
    print_summary(&summaries);
    print_written(&written);
    let wall_s = started.elapsed().as_secs_f64();
    tell!("runner: {}", protocol_time.describe(wall_s));
    if stop.is_none() && todo > 0 {
        tell!(
            "runner: the estimate before the first cell was ~{}; the cells took {} ({:.2}x the estimate)",
            super::plan::human_duration(estimated_s),
            super::plan::human_duration(cells_s),
            cells_s / estimated_s
        );
    }
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
            tell!("runner: interrupted. {}", resume_hint());
            Ok(exit::INTERRUPTED)
        }
        Some(Stop::FailFast(id)) => {
            tell!(
                "runner: stopped at the first failure (--fail-fast): cell {id}. {}",
                resume_hint()
            );
            Ok(exit::CELLS_FAILED)
        }
        Some(Stop::DeviceLost(why)) => {
            tell!(
                "runner: sweep ended: {why}. Once the device is back: {}",
                resume_hint()
            );
            Ok(exit::CELLS_FAILED)
        }
        None if any_failed => Ok(exit::CELLS_FAILED),
        None => Ok(exit::OK),
    }
}

/// The device, its sensor, what the sensor measures, and the notices for the manifest.
pub(super) type OpenedDevice = (
    SelectedDevice,
    Box<dyn EnergySensor>,
    SensorInfo,
    Vec<String>,
);

/// Opens the device the config names and its energy sensors, telling the user (prefixed with
/// `who`) about any fallback and what energy is not metered; returns them with the notices for
/// the manifest. `shared_host` says why the host's own counters (RAPL) belong to no one cell:
/// other workers measure on this host at the same time.
pub(super) fn open_device_and_sensor(
    prepared: &Prepared,
    who: &str,
    shared_host: Option<&str>,
) -> Result<OpenedDevice> {
    let selected = device::select(&prepared.exp.config.device)?;
    super::plan::check_target(prepared, &selected.info.backend)?;
    let mut notices = Vec::new();
    if let Some(n) = &selected.notice {
        tell!("{who} {n}");
        notices.push(n.clone());
    }
    let selection = sensor::select(&prepared.exp.config.sensor, &selected.info, shared_host)?;
    for n in selection.notices {
        tell!("{who} {n}");
        notices.push(n);
    }
    let (sensor, fault_notice) = sensor::with_fault_injection(selection.sensor);
    if let Some(n) = fault_notice {
        tell!("{who} {n}");
        notices.push(n);
    }
    let sensor_info = sensor.info();
    if sensor_info.measures_energy {
        // Every energy figure that follows covers these, and nothing else.
        tell!(
            "{who} energy metered: {} ({})",
            sensor_info.domains().join(" + "),
            sensor_info.kind
        );
    } else {
        // The manifest's sensor note says it: one line here.
        tell!("{who} energy not measured: {}", sensor_info.note);
    }
    Ok((selected, sensor, sensor_info, notices))
}

/// The idle baseline of this session, when the sensor measures energy; `None` also when an
/// interrupt cut it short (an interrupted idle measurement is no baseline).
pub(super) fn idle_baseline(
    sensor: &mut dyn EnergySensor,
    sensor_info: &SensorInfo,
    protocol: &ProtocolSection,
    protocol_time: &mut ProtocolTime,
    who: &str,
) -> Result<Option<crate::measure::IdleBaseline>> {
    if !sensor_info.measures_energy {
        return Ok(None);
    }
    tell!(
        "{who} idle baseline: {} s settling, then {} s of idle power",
        protocol.idle_settle_s,
        protocol.idle_baseline_s
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
        let domains: Vec<String> = idle
            .domain_power_w
            .iter()
            .map(|(d, w)| format!("{d} {w:.1} W"))
            .collect();
        let ticks = idle
            .counter_ticks
            .map(|t| format!("{t} GPU counter updates, "))
            .unwrap_or_default();
        tell!(
            "{who} idle power {:.1} W ({}; {ticks}over {:.1} s)",
            idle.power_w,
            domains.join(", "),
            idle.duration_s
        );
    }
    Ok(idle.filter(|_| !crate::interrupt::requested()))
}

/// Time the measurement protocol itself took in this session, as configured: what a sweep's wall
/// time is compared against to give the runner's overhead (model loading, tokenizing, fidelity and
/// probe passes, the sampler check, writing records and reports all count as overhead).
#[derive(Debug, Default)]
pub(super) struct ProtocolTime {
    pub(super) idle_s: f64,
    pub(super) warmup_s: f64,
    pub(super) stabilize_s: f64,
    pub(super) windows_s: f64,
    pub(super) cooldown_s: f64,
}

impl ProtocolTime {
    pub(super) fn add_cell(&mut self, record: &CellRecord, protocol: &ProtocolSection) {
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
        for prefix in &record.prefixes {
            add(Some(&prefix.warmup), &prefix.windows);
        }
    }

    pub(super) fn total_s(&self) -> f64 {
        self.idle_s + self.warmup_s + self.stabilize_s + self.windows_s + self.cooldown_s
    }

    pub(super) fn describe(&self, wall_s: f64) -> String {
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
pub(super) fn device_health(device: &Device, sensor: &dyn EnergySensor) -> Result<()> {
    let probe = Tensor::ones(4, DType::F32, device)?.sum_all()?;
    probe.to_scalar::<f32>()?;
    device.synchronize()?;
    sensor.health_check()
}

/// The run's estimate before its first cell: each workload's cells priced at this device's
/// measured rates.
fn estimate_run(
    prepared: &Prepared,
    device: &Device,
    cells: &[&Cell],
    floor: WindowFloor,
) -> Result<Estimate> {
    let cost = RunCost::measure(
        &prepared.specs,
        device,
        cells,
        &prepared.exp.config.protocol,
    )?;
    Ok(Estimate::new(
        cells,
        &cost,
        &prepared.exp.config.protocol,
        floor,
    ))
}
