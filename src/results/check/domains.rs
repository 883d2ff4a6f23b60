//! Energy domains read back (`gpu-board`, `cpu-package`, `dram`): every window's domains are the
//! ones the record's sensor metered and add up to the window's energy, each within what a device
//! draws; idle powers per domain likewise. A domain nobody metered is never rendered as measured.

use std::collections::BTreeMap;

use super::window::{short_word, MAX_SHORT_LIST};
use super::{printable, Problems, MAX_POWER_W};
use crate::measure::WindowRecord;

/// Idle powers by domain: short names, powers a device can draw.
pub(super) fn domain_powers(p: &mut Problems, at: &str, powers: &BTreeMap<String, f64>) {
    if powers.len() > MAX_SHORT_LIST || powers.keys().any(|d| !short_word(d)) {
        p.add(format!(
            "{at} is not a map of at most {MAX_SHORT_LIST} energy domain names"
        ));
        return;
    }
    for (d, w) in powers {
        p.number(&format!("{at}[{}]", printable(d)), *w, 0.0, MAX_POWER_W);
    }
}

/// One window's domain energies: short names, energies a device spends in the window.
pub(super) fn window_domains(p: &mut Problems, at: &str, w: &WindowRecord) {
    let d = &w.domain_energy_j;
    if d.len() > MAX_SHORT_LIST || d.keys().any(|d| !short_word(d)) {
        p.add(format!(
            "{at}.domain_energy_j is not a map of at most {MAX_SHORT_LIST} energy domain names"
        ));
        return;
    }
    let most = w.duration_s.max(0.0) * MAX_POWER_W;
    for (domain, &v) in d {
        if !(v.is_finite() && v >= 0.0 && v <= most) {
            p.add(format!(
                "{at}.domain_energy_j[{}] is {v:?} J, not an energy a device spends in {:.3} s",
                printable(domain),
                w.duration_s
            ));
        }
    }
}

/// Every window's domains are the ones the record's sensor says it metered, and add up to the
/// window's energy; the idle powers name the same domains.
pub(super) fn metered_domains<'a>(
    p: &mut Problems,
    metered: &[String],
    windows: impl Iterator<Item = &'a WindowRecord>,
    idle: &BTreeMap<String, f64>,
) {
    let expected = sorted(metered);
    let words = |d: &[String]| {
        if d.is_empty() {
            "nothing".to_string()
        } else {
            d.join(" + ")
        }
    };
    for w in windows {
        // Empty in records made before domains; odd names are reported by window_domains.
        if w.domain_energy_j.is_empty() || w.domain_energy_j.keys().any(|d| !short_word(d)) {
            continue;
        }
        if !w.domain_energy_j.keys().eq(expected.iter()) {
            let held: Vec<String> = w.domain_energy_j.keys().cloned().collect();
            p.add(format!(
                "a window holds energy of {}, but the record's sensor metered {}",
                held.join(" + "),
                words(metered)
            ));
            return;
        }
        let sum: f64 = w.domain_energy_j.values().sum();
        if let Some(total) = w
            .energy_j
            .filter(|t| (sum - t).abs() > 1e-6 * t.abs().max(1.0))
        {
            p.add(format!(
                "a window's domains add up to {sum} J, not its energy_j {total} J"
            ));
            return;
        }
    }
    if !idle.is_empty() && !idle.keys().eq(expected.iter()) {
        p.add("idle_domain_power_w names other domains than the sensor metered".into());
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn window() -> WindowRecord {
        WindowRecord {
            loops: 10,
            duration_s: 1.0,
            loop_ms: vec![100.0; 10],
            loop_ms_stride: 1,
            energy_j: Some(100.0),
            counter_delta_j: Some(100.0),
            tail_correction_j: Some(0.0),
            trace_energy_j: None,
            counter_ticks: Some(10),
            num_power_samples: 0,
            throttle_reasons: None,
            sm_clock_min_mhz: None,
            sm_clock_max_mhz: None,
            host: None,
            domain_energy_j: Default::default(),
        }
    }

    #[test]
    fn host_domains_are_bounded_and_must_be_what_the_sensor_metered() {
        let metered: Vec<String> = ["gpu-board", "cpu-package", "dram"]
            .map(String::from)
            .into();
        let domains = |gpu: f64, cpu: f64, dram: f64| -> WindowRecord {
            let mut w = window();
            w.energy_j = Some(gpu + cpu + dram);
            w.domain_energy_j = [("gpu-board", gpu), ("cpu-package", cpu), ("dram", dram)]
                .map(|(d, j)| (d.to_string(), j))
                .into();
            w
        };
        let check = |ws: &[WindowRecord], metered: &[String], idle: &[(&str, f64)]| {
            let mut p = Problems::new(Path::new("x.json"));
            for w in ws {
                window_domains(&mut p, "w", w);
            }
            let idle = idle.iter().map(|(d, w)| (d.to_string(), *w)).collect();
            metered_domains(&mut p, metered, ws.iter(), &idle);
            domain_powers(&mut p, "idle_domain_power_w", &idle);
            p.list
        };
        let ok = [("gpu-board", 70.0), ("cpu-package", 30.0), ("dram", 4.0)];
        assert!(check(&[domains(80.0, 15.0, 5.0)], &metered, &ok).is_empty());
        // Old records: no domains at all.
        assert!(check(&[window()], &["gpu-board".into()], &[]).is_empty());
        /// The problem expected, the windows, what the sensor metered, the idle powers.
        type Case<'a> = (&'a str, Vec<WindowRecord>, Vec<String>, Vec<(&'a str, f64)>);
        let cases: Vec<Case> = vec![
            (
                "domain_energy_j[\"dram\"] is -5.0 J",
                vec![domains(80.0, 15.0, -5.0)],
                metered.clone(),
                ok.to_vec(),
            ),
            (
                "domain_energy_j[\"cpu-package\"] is NaN J",
                vec![domains(80.0, f64::NAN, 5.0)],
                metered.clone(),
                ok.to_vec(),
            ),
            (
                "domain_energy_j[\"cpu-package\"] is 1e300 J",
                vec![domains(80.0, 1e300, 5.0)],
                metered.clone(),
                ok.to_vec(),
            ),
            (
                "but the record's sensor metered gpu-board",
                vec![domains(80.0, 15.0, 5.0)],
                vec!["gpu-board".into()],
                vec![],
            ),
            (
                "metered nothing",
                vec![domains(80.0, 15.0, 5.0)],
                vec![],
                vec![],
            ),
            (
                "idle_domain_power_w[\"dram\"] is -1.0",
                vec![domains(80.0, 15.0, 5.0)],
                metered.clone(),
                vec![("gpu-board", 70.0), ("cpu-package", 30.0), ("dram", -1.0)],
            ),
            (
                "idle_domain_power_w names other domains",
                vec![domains(80.0, 15.0, 5.0)],
                metered.clone(),
                vec![("psys", 3.0)],
            ),
        ];
        for (expected, ws, metered, idle) in cases {
            let found = check(&ws, &metered, &idle);
            assert!(
                found.iter().any(|m| m.contains(expected)),
                "{expected}: {found:?}"
            );
        }
        let mut off = domains(80.0, 15.0, 5.0);
        off.energy_j = Some(200.0);
        let found = check(&[off], &metered, &ok);
        assert!(
            found
                .iter()
                .any(|m| m.contains("add up to 100 J, not its energy_j 200 J")),
            "{found:?}"
        );
    }
}
