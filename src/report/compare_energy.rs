//! `runner compare` across runs that metered different energy domains (a run with the GPU board,
//! CPU packages and DRAM against one of the GPU board alone): energy is compared over the
//! domains both metered, never a total of more domains against a total of fewer.

use crate::analysis::domains::window_energy_over;
use crate::analysis::CellSummary;
use crate::results::Manifest;

/// The domains both runs metered, in A's order.
pub(super) fn shared_domains(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|d| b.contains(d)).cloned().collect()
}

/// Per-window energy per inference of A and B over the domains both metered (a run with the GPU
/// board, CPU packages and DRAM against one of the GPU board alone: the GPU board), never a total
/// of more domains against a total of fewer; `None` when they share none.
pub(super) fn energy_windows(a: &CellSummary, b: &CellSummary) -> Option<(Vec<f64>, Vec<f64>)> {
    if a.metered == b.metered {
        return Some((a.window_energy_mj.clone(), b.window_energy_mj.clone()));
    }
    let shared = shared_domains(&a.metered, &b.metered);
    if shared.is_empty() {
        return None;
    }
    Some((
        window_energy_over(&a.domains, &shared)?,
        window_energy_over(&b.domains, &shared)?,
    ))
}

/// What the energy ratios cover when the runs metered different domains.
pub(super) fn energy_scope(a: &Manifest, b: &Manifest) -> Option<String> {
    let (da, db) = (a.sensor.domains(), b.sensor.domains());
    if da == db || da.is_empty() || db.is_empty() {
        return None;
    }
    let shared = shared_domains(&da, &db);
    let over = if shared.is_empty() {
        "no domain in common, so energy is not compared".to_string()
    } else {
        format!("energy is compared over {} only", shared.join(" + "))
    };
    Some(format!(
        "A metered {}, B {}: {over}",
        da.join(" + "),
        db.join(" + ")
    ))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::analysis::summarize;
    use crate::analysis::tests::record_with_energy;
    use crate::results::CellRecord;
    use crate::sensor::{CPU_PACKAGE, DRAM, GPU_BOARD};

    /// A: an older record of the GPU board alone, 200 J a window. B: the same GPU board energy,
    /// with 50 J of CPU package and 10 J of DRAM beside it.
    pub(in crate::report) fn gpu_only_and_gpu_with_host() -> (CellRecord, CellRecord) {
        let a = record_with_energy(vec![(2.0, 100, 200.0, 200.0); 6], Some(50.0));
        let mut b = record_with_energy(vec![(2.0, 100, 260.0, 200.0); 6], Some(80.0));
        b.sensor.metered = vec![GPU_BOARD.into(), CPU_PACKAGE.into(), DRAM.into()];
        for w in &mut b.windows {
            w.domain_energy_j = [(GPU_BOARD, 200.0), (CPU_PACKAGE, 50.0), (DRAM, 10.0)]
                .map(|(d, j)| (d.to_string(), j))
                .into();
        }
        (a, b)
    }

    #[test]
    fn runs_that_metered_different_domains_compare_energy_over_those_both_metered() {
        let (a, b) = gpu_only_and_gpu_with_host();
        let (sa, sb) = (summarize(&a), summarize(&b));
        // Totals alone would say B spends 1.3x: it does not, on the one domain both metered.
        let (ea, eb) = energy_windows(&sa, &sb).unwrap();
        assert!(ea.iter().chain(&eb).all(|e| (e - 500.0).abs() < 1e-9));
        // The same domains: the totals, as before.
        let (ea, eb) = energy_windows(&sb, &sb).unwrap();
        assert!(ea.iter().chain(&eb).all(|e| (e - 650.0).abs() < 1e-9));
        // No domain in common (the CPU's alone against the GPU board's): no energy ratio.
        let mut c = b.clone();
        c.sensor.metered = vec![CPU_PACKAGE.into(), DRAM.into()];
        for w in &mut c.windows {
            w.domain_energy_j.remove(GPU_BOARD);
            w.energy_j = Some(60.0);
        }
        assert!(energy_windows(&sa, &summarize(&c)).is_none());
        assert!(shared_domains(&sb.metered, &summarize(&c).metered) == [CPU_PACKAGE, DRAM]);
    }
}
