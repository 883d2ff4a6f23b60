//! A cell's energy domain by domain (the GPU board, the CPU packages, DRAM): gross and net per
//! inference, average and idle power, each from the same windows as the cell's total. Records made
//! before domains were recorded metered the GPU board alone: their total is that domain's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::measure::WindowRecord;
use crate::results::CellRecord;
use crate::sensor::energy;
use crate::stats::percentile;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSummary {
    /// `gpu-board`, `cpu-package`, `dram`.
    pub domain: String,
    /// Median over windows of the domain's energy / samples, mJ (gross: idle included).
    pub energy_per_inference_mj: Option<f64>,
    /// The same above the domain's idle power.
    pub energy_net_per_inference_mj: Option<f64>,
    /// The domain's energy over the windows' time.
    pub avg_power_w: Option<f64>,
    pub idle_power_w: Option<f64>,
    /// Per-window energy per inference, for comparisons over the domains two runs share.
    #[serde(skip)]
    pub window_energy_mj: Vec<f64>,
}

/// The idle power of `domain` in a record: its own entry, or for a record of one domain made
/// before domains were recorded, the record's idle power.
fn idle_of(r: &CellRecord, domain: &str, metered: &[String]) -> Option<f64> {
    if r.idle_domain_power_w.is_empty() {
        return r.idle_power_w.filter(|_| metered == [domain]);
    }
    r.idle_domain_power_w.get(domain).copied()
}

/// Each metered domain of `windows` (a record's whole-model or decode windows), in the order
/// the sensor metered them; empty when no window measured energy.
pub fn domain_summaries(r: &CellRecord, windows: &[WindowRecord]) -> Vec<DomainSummary> {
    let metered = r.sensor.domains();
    if windows.is_empty() || windows.iter().any(|w| w.energy_j.is_none()) {
        return Vec::new();
    }
    let batch = r.cell.batch_size.max(1) as f64;
    let total_s: f64 = windows.iter().map(|w| w.duration_s).sum();
    metered
        .iter()
        .map(|domain| {
            let energies: Option<Vec<f64>> = windows
                .iter()
                .map(|w| w.energy_in(domain, &metered))
                .collect();
            let idle = idle_of(r, domain, &metered);
            let per_inference =
                |e: f64, w: &WindowRecord| e * 1e3 / (f64::from(w.loops.max(1)) * batch);
            let Some(energies) = energies else {
                return DomainSummary {
                    domain: domain.clone(),
                    energy_per_inference_mj: None,
                    energy_net_per_inference_mj: None,
                    avg_power_w: None,
                    idle_power_w: idle,
                    window_energy_mj: Vec::new(),
                };
            };
            let gross: Vec<f64> = energies
                .iter()
                .zip(windows)
                .map(|(&e, w)| per_inference(e, w))
                .collect();
            let net: Option<Vec<f64>> = idle.map(|idle| {
                energies
                    .iter()
                    .zip(windows)
                    .map(|(&e, w)| per_inference(energy::net_energy_j(e, idle, w.duration_s), w))
                    .collect()
            });
            DomainSummary {
                domain: domain.clone(),
                energy_per_inference_mj: Some(percentile(&gross, 50.0)),
                energy_net_per_inference_mj: net.map(|n| percentile(&n, 50.0)),
                avg_power_w: (total_s > 0.0).then(|| energies.iter().sum::<f64>() / total_s),
                idle_power_w: idle,
                window_energy_mj: gross,
            }
        })
        .collect()
}

/// Per-window energy per inference over `domains` only (each must have been metered), for two
/// runs that metered different sets; `None` when a domain is missing or has no window energy.
pub fn window_energy_over(domains: &[DomainSummary], over: &[String]) -> Option<Vec<f64>> {
    let chosen: Vec<&DomainSummary> = over
        .iter()
        .map(|d| domains.iter().find(|s| &s.domain == d))
        .collect::<Option<_>>()?;
    let n = chosen.first()?.window_energy_mj.len();
    if n == 0 || chosen.iter().any(|s| s.window_energy_mj.len() != n) {
        return None;
    }
    Some(
        (0..n)
            .map(|i| chosen.iter().map(|s| s.window_energy_mj[i]).sum())
            .collect(),
    )
}

/// The summaries by domain name.
pub fn by_domain(domains: &[DomainSummary]) -> BTreeMap<&str, &DomainSummary> {
    domains.iter().map(|d| (d.domain.as_str(), d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tests::record_with_energy;
    use crate::sensor::{CPU_PACKAGE, DRAM, GPU_BOARD};

    #[test]
    fn an_old_record_is_the_gpu_board_alone_with_its_idle_power() {
        // Six 2 s windows of 100 loops at batch 4, 200 J each; idle 50 W (record_with_energy).
        let r = record_with_energy(vec![(2.0, 100, 200.0, 200.0); 6], Some(50.0));
        let d = domain_summaries(&r, &r.windows);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].domain, GPU_BOARD);
        assert!((d[0].energy_per_inference_mj.unwrap() - 500.0).abs() < 1e-9);
        assert!((d[0].energy_net_per_inference_mj.unwrap() - 250.0).abs() < 1e-9);
        assert!((d[0].avg_power_w.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(d[0].idle_power_w, Some(50.0));
    }

    #[test]
    fn three_domains_side_by_side_each_net_of_its_own_idle_power() {
        let mut r = record_with_energy(vec![(2.0, 100, 260.0, 200.0); 6], Some(80.0));
        r.sensor.metered = vec![GPU_BOARD.into(), CPU_PACKAGE.into(), DRAM.into()];
        r.idle_domain_power_w = [(GPU_BOARD, 50.0), (CPU_PACKAGE, 25.0), (DRAM, 5.0)]
            .map(|(d, w)| (d.to_string(), w))
            .into();
        for w in &mut r.windows {
            w.domain_energy_j = [(GPU_BOARD, 200.0), (CPU_PACKAGE, 50.0), (DRAM, 10.0)]
                .map(|(d, j)| (d.to_string(), j))
                .into();
        }
        let d = domain_summaries(&r, &r.windows);
        let by = by_domain(&d);
        assert_eq!(
            d.iter().map(|d| d.domain.as_str()).collect::<Vec<_>>(),
            [GPU_BOARD, CPU_PACKAGE, DRAM]
        );
        // CPU: 50 J / 400 inferences = 125 mJ; net (50 - 25 W * 2 s) = 0.
        assert!((by[CPU_PACKAGE].energy_per_inference_mj.unwrap() - 125.0).abs() < 1e-9);
        assert!(by[CPU_PACKAGE].energy_net_per_inference_mj.unwrap().abs() < 1e-9);
        assert!((by[DRAM].avg_power_w.unwrap() - 5.0).abs() < 1e-9);
        assert!((by[GPU_BOARD].energy_net_per_inference_mj.unwrap() - 250.0).abs() < 1e-9);
        // Over the GPU board and DRAM: 525 mJ a window.
        let over = window_energy_over(&d, &[GPU_BOARD.into(), DRAM.into()]).unwrap();
        assert!(over.iter().all(|e| (e - 525.0).abs() < 1e-9));
        assert_eq!(window_energy_over(&d, &["psys".into()]), None);
        // Without energy there is no domain figure at all.
        for w in &mut r.windows {
            w.energy_j = None;
        }
        assert!(domain_summaries(&r, &r.windows).is_empty());
    }
}
