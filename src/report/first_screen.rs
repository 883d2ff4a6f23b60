//! What a reviewer checks before reading any number, gathered for the top of the report: what
//! the energy includes (from what the records say was metered), the GPU and its software (driver,
//! CUDA, cuBLAS, power limit, persistence mode, ECC), whether clocks were held back, how many
//! windows each interval rests on and how much they spread, and which chart to show first.

use serde::Serialize;

use crate::analysis::{CellSummary, NOISY_CV};
use crate::results::{CellRecord, CellStatus, Manifest};
use crate::sensor::{CPU_PACKAGE, DRAM, GPU_BOARD};
use crate::stats::{median_coverage, percentile, MIN_FOR_INTERVAL};

#[derive(Debug, Serialize)]
pub(super) struct FirstScreen {
    /// What the energy figures include and what they leave out.
    energy_scope: String,
    /// The energy domains the records metered (`gpu-board`, `cpu-package`, `dram`), in order.
    domains: Vec<String>,
    gpu: Option<GpuFacts>,
    /// Whether clocks were held back, and in how many cells.
    throttling: String,
    /// How many windows the cells' intervals rest on, and what those intervals are.
    windows: String,
    /// The spread of the per-window median latencies over the cells.
    window_cv: String,
}

#[derive(Debug, Serialize)]
struct GpuFacts {
    name: String,
    driver: String,
    cuda: String,
    cublas: String,
    power_limit: String,
    persistence_mode: String,
    ecc: String,
}

/// Words for each energy domain a sensor may meter.
fn domain_words(domain: &str) -> String {
    match domain {
        GPU_BOARD => {
            "the GPU board (NVML's total-energy counter: the GPU, its memory and the board)".into()
        }
        CPU_PACKAGE => "the CPU package (RAPL, every socket)".into(),
        DRAM => "the host's DRAM (RAPL)".into(),
        other => other.to_string(),
    }
}

/// Every domain some record metered, in the order the sensors metered them.
fn metered(records: &[CellRecord]) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for r in records {
        for d in r.sensor.domains() {
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
    }
    domains
}

/// What the energy includes, from the records' sensors (records made before sensors said so
/// metered NVML's counter: the GPU board).
fn energy_scope(records: &[CellRecord], energy_measured: bool) -> String {
    if !energy_measured {
        return "not measured: latency and throughput only".into();
    }
    let domains = metered(records);
    let on_gpu = records.iter().any(|r| r.device.backend == "cuda");
    let missing: Vec<&str> = [
        (GPU_BOARD, "the GPU", on_gpu),
        (CPU_PACKAGE, "CPU", true),
        (DRAM, "host DRAM", true),
    ]
    .iter()
    .filter(|(d, _, applies)| *applies && !domains.iter().any(|m| m == d))
    .map(|(_, w, _)| *w)
    .chain(["the rest of the host (fans, disks, power supply losses)"])
    .collect();
    let only = if domains.len() == 1 { " only" } else { "" };
    format!(
        "{}{only}; not included: {}",
        domains
            .iter()
            .map(|d| domain_words(d))
            .collect::<Vec<_>>()
            .join(" + "),
        missing.join(", ")
    )
}

fn or_not_recorded(v: Option<String>) -> String {
    v.unwrap_or_else(|| "not recorded".into())
}

fn on_off(v: Option<bool>) -> String {
    or_not_recorded(v.map(|b| if b { "on" } else { "off" }.to_string()))
}

pub(super) fn first_screen(
    manifest: &Manifest,
    records: &[CellRecord],
    cells: &[CellSummary],
    energy_measured: bool,
) -> FirstScreen {
    let gpu = manifest.gpu.as_ref().map(|g| GpuFacts {
        name: g.name.clone(),
        driver: g.driver.clone(),
        cuda: g
            .cuda_driver_version
            .as_ref()
            .map_or("not recorded".into(), |v| {
                format!("{v} (driver's CUDA version)")
            }),
        cublas: or_not_recorded(
            records
                .iter()
                .find_map(|r| r.device.cublas_version.clone())
                .or_else(|| manifest.device.cublas_version.clone()),
        ),
        power_limit: or_not_recorded(g.power_limit_w.map(|w| format!("{w:.0} W"))),
        persistence_mode: on_off(g.persistence_mode),
        ecc: on_off(g.ecc_enabled),
    });
    let measured: Vec<&CellSummary> = cells
        .iter()
        .filter(|c| c.status == CellStatus::Ok)
        .collect();
    let limited: Vec<&CellSummary> = measured
        .iter()
        .copied()
        .filter(|c| c.throttling.limited())
        .collect();
    let recorded = measured.iter().any(|c| c.throttling.recorded);
    let throttling = if manifest.gpu.is_none() && !records.iter().any(|r| r.gpu_before.is_some()) {
        "not applicable (no GPU metered)".to_string()
    } else if limited.is_empty() {
        if recorded {
            "no clock-throttle reason (power cap, thermal, hardware slowdown) in any window".into()
        } else {
            "no cell averaged within 3 % of its power limit; throttle reasons per window were not recorded by the runner that made these records".into()
        }
    } else {
        let names: Vec<&str> = limited.iter().map(|c| c.label.as_str()).collect();
        format!(
            "{} of {} cells ran with their clocks held back (flag P): {}",
            limited.len(),
            measured.len(),
            names.join(", ")
        )
    };
    let mut counts: Vec<usize> = measured
        .iter()
        .filter(|c| c.scope == "model")
        .map(|c| c.repeats)
        .collect();
    counts.sort();
    counts.dedup();
    let windows = match (counts.first(), counts.last()) {
        (Some(&lo), Some(&hi)) => {
            let n = if lo == hi {
                format!("{lo} windows a cell")
            } else {
                format!("{lo} to {hi} windows a cell")
            };
            match median_coverage(lo) {
                Some(c) => format!(
                    "{n}: 95 % intervals of each median (order statistics, exact coverage {:.1} % at {lo})",
                    c * 100.0
                ),
                None => format!(
                    "{n}: too few for a 95 % interval of a median ({MIN_FOR_INTERVAL} needed; [min, max] of {lo} covers {:.1} %): points only, ties not judged",
                    (1.0 - 0.5f64.powi(lo as i32 - 1)) * 100.0
                ),
            }
        }
        _ => "no cell was measured".into(),
    };
    let cvs: Vec<(f64, &str)> = measured
        .iter()
        .filter_map(|c| Some((c.window_cv?, c.label.as_str())))
        .collect();
    let window_cv = window_cv_text(&cvs);
    FirstScreen {
        energy_scope: energy_scope(records, energy_measured),
        domains: metered(records),
        gpu,
        throttling,
        windows,
        window_cv,
    }
}

/// The first screen's window CV: median and worst over the cells, and how many are noisy (flag
/// N), with what that says about the machine.
fn window_cv_text(cvs: &[(f64, &str)]) -> String {
    if cvs.is_empty() {
        "n/a (fewer than 2 windows)".to_string()
    } else {
        let values: Vec<f64> = cvs.iter().map(|c| c.0).collect();
        let worst = cvs
            .iter()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .expect("not empty");
        let noisy = values.iter().filter(|&&v| v > NOISY_CV).count();
        let steadiness = if noisy == 0 {
            String::new()
        } else {
            format!(
                "; {noisy} of {} cells above {:.0} % (flag N): their windows disagree, so they did not run steadily (a loaded machine, moving clocks, windows too short), and are poor references for runner compare",
                values.len(),
                NOISY_CV * 100.0
            )
        };
        format!(
            "median {:.2} %, worst {:.2} % ({}){steadiness}",
            percentile(&values, 50.0) * 100.0,
            worst.0 * 100.0,
            worst.1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tests::record_with_energy;

    #[test]
    fn noisy_windows_say_the_machine_was_not_steady() {
        let steady = window_cv_text(&[(0.003, "fp16 b16"), (0.0056, "fp16 b64")]);
        assert_eq!(steady, "median 0.43 %, worst 0.56 % (fp16 b64)");
        let loaded = window_cv_text(&[(0.35, "fp32 b2"), (0.02, "fp32 b8"), (0.99, "q8_0 b2")]);
        assert!(
            loaded.starts_with("median 35.00 %, worst 99.00 % (q8_0 b2); 2 of 3 cells above 5 % (flag N): their windows disagree, so they did not run steadily"),
            "{loaded}"
        );
        assert_eq!(window_cv_text(&[]), "n/a (fewer than 2 windows)");
    }

    #[test]
    fn the_energy_scope_comes_from_what_the_records_metered() {
        let mut r = record_with_energy(vec![(1.0, 10, 1.0, 1.0)], None);
        // Records made before `metered`: NVML's counter, the GPU board.
        let scope = energy_scope(&[r.clone()], true);
        assert!(scope.starts_with("the GPU board (NVML"), "{scope}");
        assert!(
            scope.contains(" only; not included: CPU, host DRAM, the rest of the host"),
            "{scope}"
        );
        // A record that says it metered the GPU board and the CPU package.
        r.sensor.metered = vec![GPU_BOARD.into(), "cpu-package".into()];
        let scope = energy_scope(&[r.clone()], true);
        assert!(
            scope.contains(" + the CPU package (RAPL, every socket); not included: host DRAM"),
            "{scope}"
        );
        assert!(!scope.contains(" only"), "{scope}");
        // A CPU run metered through RAPL: the CPU package and DRAM, and no GPU to leave out.
        r.device.backend = "cpu".into();
        r.sensor.metered = vec![CPU_PACKAGE.into(), DRAM.into()];
        let scope = energy_scope(&[r.clone()], true);
        assert_eq!(
            scope,
            "the CPU package (RAPL, every socket) + the host's DRAM (RAPL); not included: the rest of the host (fans, disks, power supply losses)"
        );
        // RAPL alone beside a GPU (sensor.kind = "rapl"): the GPU is what is left out.
        r.device.backend = "cuda".into();
        let scope = energy_scope(&[r.clone()], true);
        assert!(
            scope.contains("; not included: the GPU, the rest"),
            "{scope}"
        );
        // All three side by side.
        r.sensor.metered = vec![GPU_BOARD.into(), CPU_PACKAGE.into(), DRAM.into()];
        let scope = energy_scope(&[r.clone()], true);
        assert!(
            scope.starts_with("the GPU board (NVML's total-energy counter: the GPU, its memory and the board) + the CPU package (RAPL, every socket) + the host's DRAM (RAPL); not included: the rest of the host"),
            "{scope}"
        );
        assert_eq!(
            energy_scope(&[r], false),
            "not measured: latency and throughput only"
        );
    }
}
