//! The run directory an invocation writes, locked: a new one, or with `--resume` an earlier run of
//! the same experiment on the same kind of device, with its records; and the command line that
//! completes a run, as the console and the reports print it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::{Prepared, RunOptions};
use crate::error::ConfigError;
use crate::results::{CellRecord, Manifest, RunDir};
use crate::shell::{shell_path, shell_quote};

/// The run directory this invocation writes, locked: a new one, or with `--resume` the earlier
/// run with its records (see [`reopen`]).
pub fn open_run(
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
    // Kernels, step rules and graphs change between builds, and a cell's id hashes what was
    // asked, not which code ran: one run's records come from one build.
    if old.build() != fresh.build() {
        return Err(ConfigError::new(format!(
            "--resume: {here} was measured by {}; this is {}: {ONE_BUILD}; resume with the binary that began it, or start a new run without --resume",
            old.build(),
            fresh.build()
        ))
        .into());
    }
    // How energy is sampled is a setting of the whole run, not of a cell: the manifest says one.
    let config = &prepared.exp.config;
    if old.config.sensor != config.sensor {
        return Err(ConfigError::new(format!(
            "--resume: {here} was measured with {}; {} would measure the rest with {}: one run holds one sensor setting (the manifest states one); restore the setting, or start a new run without --resume",
            sensor_text(&old.config.sensor),
            opts.file.display(),
            sensor_text(&config.sensor)
        ))
        .into());
    }
    // What the energy covers is a property of the whole run too: a counter that went away (or
    // became readable) since would mix records of two scopes under one report.
    let (was, now) = (old.sensor.domains(), fresh.sensor.domains());
    if was != now {
        let words = |d: &[String]| {
            if d.is_empty() {
                "no energy domain".to_string()
            } else {
                d.join(" + ")
            }
        };
        return Err(ConfigError::new(format!(
            "--resume: {here} metered {}; this machine now meters {} ({}): one run's records cover one set of domains; restore what changed (e.g. read access to RAPL), or start a new run without --resume",
            words(&was),
            words(&now),
            scope_why(&fresh)
        ))
        .into());
    }
    let records: BTreeMap<String, CellRecord> = dir
        .read_records(&old)?
        .into_iter()
        .map(|r| (r.cell.id.clone(), r))
        .collect();
    let strays: Vec<&str> = records
        .keys()
        .filter(|id| !prepared.plan.iter().any(|c| &c.id == *id))
        .map(String::as_str)
        .collect();
    if !strays.is_empty() {
        let changed = config_changes(&old.config, config);
        let what = if changed.is_empty() {
            "the experiment, its weights, dataset, protocol or execution settings changed since the run began, or a runner that hashed fewer of them planned it (a cell id hashes them all)".to_string()
        } else {
            format!(
                "changed since the run began: {} (a cell id hashes every setting that shapes its numbers)",
                changed.join("; ")
            )
        };
        return Err(ConfigError::new(format!(
            "--resume: {here} has {} recorded cell(s) that {} no longer plans (cells/{}.json ...): {what}; restore them, or start a new run without --resume",
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

/// Why a run is completed only by the build that began it.
pub(super) const ONE_BUILD: &str = "one run holds one build's numbers (the records say which kernels ran, and those change between builds)";

/// Why a fresh session meters what it meters: the line the sensor selection printed.
fn scope_why(fresh: &Manifest) -> String {
    if !fresh.sensor.measures_energy {
        return fresh.sensor.note.clone();
    }
    fresh
        .notices
        .iter()
        .find(|n| n.starts_with("energy covers"))
        .cloned()
        .unwrap_or_else(|| fresh.sensor.note.clone())
}

fn sensor_text(s: &crate::config::SensorSection) -> String {
    format!(
        "sensor.kind = {:?}, sensor.sample_interval_ms = {}, sensor.powercap_root = {:?}",
        s.kind.name(),
        s.sample_interval_ms,
        s.powercap_root.display().to_string()
    )
}

/// The settings that differ between two configurations, `key: old, now new`, at most five.
fn config_changes(
    old: &crate::config::ExperimentConfig,
    new: &crate::config::ExperimentConfig,
) -> Vec<String> {
    fn walk(
        path: &str,
        a: Option<&serde_json::Value>,
        b: Option<&serde_json::Value>,
        out: &mut Vec<String>,
    ) {
        use serde_json::Value;
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let sub = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&sub, x.get(k), y.get(k), out);
                }
            }
            (a, b) if a != b => {
                let show = |v: Option<&Value>| v.map_or("(default)".to_string(), |v| v.to_string());
                out.push(format!("{path}: {}, now {}", show(a), show(b)));
            }
            _ => {}
        }
    }
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk("", Some(&a), Some(&b), &mut out);
    out.truncate(5);
    out
}

/// The command that completes this run: same file, overrides and templates, `--resume --out`.
pub fn resume_command(opts: &RunOptions, dir: &Path) -> String {
    let mut extra = Vec::new();
    if let Some(t) = &opts.templates {
        extra.extend(["--templates".to_string(), t.display().to_string()]);
    }
    if opts.fail_fast {
        extra.push("--fail-fast".to_string());
    }
    resume_command_line(
        &opts.file.display().to_string(),
        dir,
        &opts.overrides,
        &extra,
    )
}

/// `runner run FILE --resume --out DIR --set ...` plus `extra` arguments, each quoted for a POSIX
/// shell where it needs it: the command that completes a run, as the console and reports print it.
pub fn resume_command_line(
    file: &str,
    dir: &Path,
    overrides: &[String],
    extra: &[String],
) -> String {
    let mut cmd = format!(
        "runner run {} --resume --out {}",
        shell_path(file),
        shell_quote(&dir.display().to_string())
    );
    for o in overrides {
        cmd.push_str(&format!(" --set {}", shell_quote(o)));
    }
    for e in extra {
        cmd.push(' ');
        cmd.push_str(&shell_quote(e));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::run::CellSelection;

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
        // A file named like an option stays the file.
        assert_eq!(
            resume_command_line("-x.toml", Path::new("r"), &[], &[]),
            "runner run ./-x.toml --resume --out r"
        );
    }
}
