//! Whether the GPU held its clocks back while a cell was measured: NVML's clock-throttle reasons
//! per window (records since they were recorded), and for every record the plainer evidence of
//! average power at the power limit with the SM clock lower after the cell than before it.

use serde::{Deserialize, Serialize};

use crate::results::CellRecord;
use crate::sensor::limits_clocks;

/// Average power within this fraction of the enforced limit counts as running at the cap.
pub const AT_CAP: f64 = 0.97;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    /// Whether any window recorded its throttle reasons (else only the power evidence speaks).
    pub recorded: bool,
    /// Reasons that slowed the work (power cap, thermal, hardware slowdown), in first-seen order.
    pub reasons: Vec<String>,
    /// 1-based windows in which any of them was seen.
    pub windows: Vec<usize>,
    /// The lowest and highest SM clock sampled in the windows, MHz.
    pub sm_clock_mhz: Option<(u32, u32)>,
    /// Average power over the windows was within 3 % of the enforced power limit.
    pub at_power_cap: bool,
    pub power_limit_w: Option<f64>,
}

impl Throttling {
    /// The clocks were held back (by a recorded reason, or at the power cap).
    pub fn limited(&self) -> bool {
        !self.reasons.is_empty() || self.at_power_cap
    }

    /// The report's sentence, when the clocks were held back.
    pub fn flag(&self, windows: usize, avg_power_w: Option<f64>) -> Option<String> {
        let clocks = self
            .sm_clock_mhz
            .map(|(lo, hi)| format!(" (SM clock {lo}-{hi} MHz in the windows)"))
            .unwrap_or_default();
        if !self.reasons.is_empty() {
            let which: Vec<String> = self.windows.iter().map(|w| w.to_string()).collect();
            return Some(format!(
                "throttled: {} in window(s) {} of {windows}{clocks}: the clocks were held back, so this cell measures the GPU at its limit, not the workload alone",
                self.reasons.join(", "),
                which.join(", ")
            ));
        }
        if self.at_power_cap {
            return Some(format!(
                "at the power cap: {:.1} W average against the {:.0} W limit{clocks}; the clocks drop to stay under it{}",
                avg_power_w.unwrap_or(f64::NAN),
                self.power_limit_w.unwrap_or(f64::NAN),
                if self.recorded {
                    ""
                } else {
                    " (throttle reasons not recorded by the runner that made this record)"
                }
            ));
        }
        None
    }
}

pub fn throttling(r: &CellRecord, avg_power_w: Option<f64>) -> Throttling {
    let mut t = Throttling::default();
    for (i, w) in r.windows.iter().enumerate() {
        if let Some(reasons) = &w.throttle_reasons {
            t.recorded = true;
            let limiting: Vec<&String> = reasons.iter().filter(|r| limits_clocks(r)).collect();
            if !limiting.is_empty() {
                t.windows.push(i + 1);
            }
            for reason in limiting {
                if !t.reasons.contains(reason) {
                    t.reasons.push(reason.clone());
                }
            }
        }
        if let (Some(lo), Some(hi)) = (w.sm_clock_min_mhz, w.sm_clock_max_mhz) {
            let (a, b) = t.sm_clock_mhz.get_or_insert((lo, hi));
            *a = (*a).min(lo);
            *b = (*b).max(hi);
        }
    }
    t.power_limit_w = r
        .gpu_before
        .as_ref()
        .and_then(|g| g.power_limit_w)
        .filter(|w| *w > 0.0);
    t.at_power_cap =
        matches!((avg_power_w, t.power_limit_w), (Some(p), Some(l)) if p >= AT_CAP * l);
    if t.sm_clock_mhz.is_none() {
        // Older records: the clocks right before and after the cell.
        let clock = |g: &Option<crate::sensor::GpuState>| g.as_ref().and_then(|g| g.sm_clock_mhz);
        if let (Some(a), Some(b)) = (clock(&r.gpu_before), clock(&r.gpu_after)) {
            t.sm_clock_mhz = Some((a.min(b), a.max(b)));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tests::record_with_energy;

    #[test]
    fn recorded_reasons_name_the_windows_and_old_records_fall_back_to_the_power_cap() {
        let mut r = record_with_energy(vec![(1.0, 10, 699.0, 699.0); 6], None);
        // No reasons recorded, no GPU state: nothing to say.
        assert!(!throttling(&r, Some(699.0)).limited());
        // An old record at 699 W of a 700 W limit, the clock falling: at the power cap.
        let state = |mhz| crate::sensor::GpuState {
            name: "H200".into(),
            uuid: "GPU-x".into(),
            driver: "580".into(),
            power_limit_w: Some(700.0),
            pstate: None,
            sm_clock_mhz: Some(mhz),
            memory_clock_mhz: None,
            temperature_c: None,
            power_w: None,
            energy_counter_mj: None,
            cuda_driver_version: None,
            persistence_mode: None,
            ecc_enabled: None,
        };
        r.gpu_before = Some(state(1980));
        r.gpu_after = Some(state(1725));
        let t = throttling(&r, Some(699.0));
        assert!(t.at_power_cap && !t.recorded && t.limited());
        let flag = t.flag(6, Some(699.0)).unwrap();
        assert!(
            flag.starts_with(
                "at the power cap: 699.0 W average against the 700 W limit (SM clock 1725-1980 MHz"
            ),
            "{flag}"
        );
        assert!(flag.contains("not recorded"), "{flag}");
        assert!(!throttling(&r, Some(600.0)).limited());
        // Windows that recorded the power cap in two of six: named, with the sampled clocks.
        for (i, w) in r.windows.iter_mut().enumerate() {
            w.throttle_reasons = Some(if i >= 4 {
                vec!["gpu_idle".into(), "sw_power_cap".into()]
            } else {
                vec![]
            });
            w.sm_clock_min_mhz = Some(if i >= 4 { 1725 } else { 1980 });
            w.sm_clock_max_mhz = Some(1980);
        }
        let t = throttling(&r, Some(650.0));
        assert_eq!(
            (t.reasons.clone(), t.windows.clone()),
            (vec!["sw_power_cap".to_string()], vec![5, 6])
        );
        assert_eq!(
            t.flag(6, Some(650.0)).unwrap(),
            "throttled: sw_power_cap in window(s) 5, 6 of 6 (SM clock 1725-1980 MHz in the windows): the clocks were held back, so this cell measures the GPU at its limit, not the workload alone"
        );
        // Idle alone is not throttling.
        for w in &mut r.windows {
            w.throttle_reasons = Some(vec!["gpu_idle".into()]);
        }
        assert!(!throttling(&r, Some(650.0)).limited());
    }
}
