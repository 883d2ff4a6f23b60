//! Several GPUs of one host (`device.gpus`), or CPU stand-ins for them (`device.cpu_workers`):
//! the coordinator prepares the run directory, starts one worker process per GPU (`runner run FILE
//! --out DIR --worker gpuK --set device.gpu=K`), waits for them, and renders the reports from the
//! records. Each worker takes the next cell of the plan that has no record and no other worker's
//! claim (src/run/worker.rs, `run_worker`), so every cell still runs alone on one GPU, metered by that
//! GPU's own counter. Processes rather than threads: a CUDA context, NVML handle and sampler per
//! worker, and one worker's crash (or OOM) cannot take the others down.

use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

use crate::config::{DeviceSection, GpuSet};
use crate::device::DeviceInfo;
use crate::error::{exit, ConfigError};
use crate::report;
use crate::results::{now_rfc3339, CellStatus, Manifest, Session};
use crate::run::{self, Prepared, RunOptions};
use crate::sensor::SensorInfo;

/// Where one worker measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A CUDA ordinal.
    Gpu(usize),
    /// A CPU stand-in (tests of this path without GPUs).
    Cpu(usize),
}

impl Slot {
    pub fn label(self) -> String {
        match self {
            Slot::Gpu(k) => format!("gpu{k}"),
            Slot::Cpu(i) => format!("cpu-worker-{i}"),
        }
    }
}

/// The workers a device section asks for; `None` for the ordinary single-device run.
pub fn slots(device: &DeviceSection) -> Result<Option<Vec<Slot>>> {
    Ok(match &device.gpus {
        Some(GpuSet::List(list)) => Some(list.iter().map(|&k| Slot::Gpu(k)).collect()),
        Some(GpuSet::Named(_)) => Some((0..gpu_count()?).map(Slot::Gpu).collect()),
        None if device.cpu_workers > 1 => Some((0..device.cpu_workers).map(Slot::Cpu).collect()),
        None => None,
    })
}

/// GPUs the CUDA driver sees (CUDA_VISIBLE_DEVICES applies), for `device.gpus = "all"`.
fn gpu_count() -> Result<usize> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        let n = CudaContext::device_count().map_err(|e| {
            ConfigError::new(format!(
                "device.gpus = \"all\": the CUDA driver could not count the GPUs ({e}); check `nvidia-smi`"
            ))
        })?;
        if n < 1 {
            return Err(
                ConfigError::new("device.gpus = \"all\": the CUDA driver sees no GPU").into(),
            );
        }
        Ok(n as usize)
    }
    #[cfg(not(feature = "cuda"))]
    Err(ConfigError::new(
        "device.gpus = \"all\" but this runner was built without CUDA: build it with scripts/build-cuda.sh",
    )
    .into())
}

fn workers_word(n: usize) -> String {
    if n == 1 {
        "1 worker".to_string()
    } else {
        format!("{n} workers")
    }
}

/// The manifest's device for a run spread over workers: the real devices are in each record and
/// each worker's session.
fn workers_device(slots: &[Slot]) -> (DeviceInfo, SensorInfo) {
    let labels: Vec<String> = slots.iter().map(|s| s.label()).collect();
    let gpus = matches!(slots.first(), Some(Slot::Gpu(_)));
    let device = DeviceInfo {
        backend: if gpus { "cuda" } else { "cpu" }.into(),
        ordinal: None,
        name: format!("{} ({})", workers_word(slots.len()), labels.join(", ")),
        uuid: None,
        cpu_threads: rayon::current_num_threads(),
        cublas_version: None,
    };
    let sensor = if gpus {
        SensorInfo {
            kind: "nvml".into(),
            measures_energy: true,
            note: "each worker meters its own GPU's NVML energy counter; the records name the GPU"
                .into(),
            metered: vec![crate::sensor::GPU_BOARD.to_string()],
        }
    } else {
        SensorInfo {
            kind: "none".into(),
            metered: Vec::new(),
            measures_energy: false,
            note: "the cells ran on the CPU (CPU workers standing in for GPUs), which has no energy sensor here".into(),
        }
    };
    (device, sensor)
}

/// Runs a multi-worker sweep; returns the exit code (0 all cells measured, 1 some failed, 130
/// interrupted).
pub fn coordinate(opts: &RunOptions, prepared: &Prepared, slots: &[Slot]) -> Result<u8> {
    let started = std::time::Instant::now();
    let (device, sensor) = workers_device(slots);
    let fresh = Manifest::new(
        &prepared.exp,
        "",
        &prepared.plan,
        &device,
        &sensor,
        None,
        Vec::new(),
    )?;
    let (run_dir, mut manifest, earlier) = run::open_run(opts, prepared, fresh)?;
    let already = earlier
        .values()
        .filter(|r| r.status != CellStatus::Failed)
        .count();
    manifest.sessions.push(Session::begin(already));
    manifest.ended_at = None;
    run_dir.write_manifest(&manifest)?;
    // The workers hold the run lock shared; a serial runner stays refused while they measure.
    run_dir.share_lock()?;
    crate::interrupt::install()?;
    tell!(
        "runner: {} cells on {} ({}), results in {}",
        prepared.plan.len(),
        workers_word(slots.len()),
        slots
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", "),
        run_dir.path.display()
    );
    if matches!(slots[0], Slot::Cpu(_)) {
        tell!(
            "runner: CPU workers stand in for GPUs: they share this CPU, so their latencies are not independent measurements"
        );
    }

    let exe = std::env::current_exe().context("finding the runner binary to start workers")?;
    let mut children: Vec<(Slot, Child)> = Vec::new();
    for &slot in slots {
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .arg(&opts.file)
            .arg("--out")
            .arg(&run_dir.path)
            .arg("--worker")
            .arg(slot.label());
        for o in &opts.overrides {
            cmd.arg("--set").arg(o);
        }
        if let Slot::Gpu(k) = slot {
            cmd.arg("--set").arg(format!("device.gpu={k}"));
        }
        if opts.fail_fast {
            cmd.arg("--fail-fast");
        }
        // Their own process group: a Ctrl-C reaches the coordinator alone, which passes one
        // SIGTERM on (a second signal would make a worker quit mid-window).
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null()).process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting worker {}", slot.label()))?;
        children.push((slot, child));
    }

    let statuses = wait_all(&mut children)?;
    let records = run_dir.read_records(&manifest)?;
    let complete = records.len() == manifest.plan.len()
        && records.iter().all(|r| r.status != CellStatus::Failed);
    let interrupted = crate::interrupt::requested()
        || statuses
            .iter()
            .any(|(_, s)| s.code() == Some(exit::INTERRUPTED as i32));
    let broken: Vec<String> = statuses
        .iter()
        .filter(|(_, s)| !matches!(s.code(), Some(0) | Some(1) | Some(130)))
        .map(|(slot, s)| format!("{} ({s})", slot.label()))
        .collect();
    let now = now_rfc3339();
    let wall_s = started.elapsed().as_secs_f64();
    if let Some(session) = manifest.sessions.last_mut() {
        session.ended_at = Some(now.clone());
        session.wall_s = Some(wall_s);
        session.outcome = Some(if interrupted {
            "interrupted".to_string()
        } else if !broken.is_empty() {
            format!("worker(s) ended abnormally: {}", broken.join(", "))
        } else {
            format!("completed by {}", workers_word(slots.len()))
        });
    }
    manifest.ended_at = (records.len() == manifest.plan.len() && !interrupted).then_some(now);
    run_dir.write_manifest(&manifest)?;
    let (written, summaries) = report::render_records(
        &run_dir,
        &prepared.templates,
        &manifest,
        &records,
        &super::continue_command,
    )
    .with_context(|| crate::report::render_failed_hint(&run_dir.path))?;
    tell!(
        "runner: {} of {} cells recorded by {} in {wall_s:.1} s; reports: {} and {}",
        records.len(),
        manifest.plan.len(),
        workers_word(slots.len()),
        written.html.display(),
        written.markdown.display()
    );
    run::list_unsuccessful(&summaries);
    let resume = run::resume_command(opts, &run_dir.path);
    if interrupted {
        tell!(
            "runner: interrupted. {} of {} cells are recorded. Resume with:\n  {resume}",
            records.len(),
            manifest.plan.len()
        );
        return Ok(exit::INTERRUPTED);
    }
    if !broken.is_empty() {
        tell!(
            "runner: worker(s) {} ended abnormally (their output is above); {} of {} cells are recorded. Resume with:\n  {resume}",
            broken.join(", "),
            records.len(),
            manifest.plan.len()
        );
        return Ok(exit::CELLS_FAILED);
    }
    Ok(if complete {
        exit::OK
    } else {
        exit::CELLS_FAILED
    })
}

/// Waits for every worker; on the coordinator's first interrupt, asks each once to stop after
/// its current window (SIGTERM).
fn wait_all(children: &mut [(Slot, Child)]) -> Result<Vec<(Slot, ExitStatus)>> {
    let mut done: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut forwarded = false;
    while done.iter().any(Option::is_none) {
        for (i, (_, child)) in children.iter_mut().enumerate() {
            if done[i].is_none() {
                done[i] = child.try_wait().context("waiting for a worker")?;
            }
        }
        if crate::interrupt::requested() && !forwarded {
            forwarded = true;
            for (i, (_, child)) in children.iter().enumerate() {
                if done[i].is_none() {
                    // std has no signal but SIGKILL; kill(1) sends SIGTERM.
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(children
        .iter()
        .zip(done)
        .map(|((slot, _), s)| (*slot, s.expect("every worker ended")))
        .collect())
}
