//! Sensor-independent energy arithmetic, kept pure so it is tested with exact inputs on any machine.

use super::PowerSample;

/// Windows must see at least this many energy-counter updates: the counter ticks every ~100 ms,
/// so fewer ticks would leave a quantisation error above ~10 %.
pub const MIN_COUNTER_TICKS: u64 = 10;

/// How often NVML's total-energy counter updates, nominally: the ~100 ms above (H100 runs of
/// docs/results saw 10 updates in 0.99-1.1 s). Only the time estimate uses it, before a run's
/// idle baseline has measured the interval; no energy figure depends on it.
pub const NOMINAL_COUNTER_UPDATE_S: f64 = 0.1;

/// Energy (J) of a power trace over `[0, duration_s]` by the trapezoid rule. Before the first and
/// after the last sample the nearest sample's power is held. `None` without samples.
pub fn trapezoid_energy_j(samples: &[PowerSample], duration_s: f64) -> Option<f64> {
    let inside: Vec<&PowerSample> = samples
        .iter()
        .filter(|s| s.t_s >= 0.0 && s.t_s <= duration_s)
        .collect();
    let (first, last) = (inside.first()?, inside.last()?);
    let mut energy = first.power_w * first.t_s + last.power_w * (duration_s - last.t_s);
    for pair in inside.windows(2) {
        energy += 0.5 * (pair[0].power_w + pair[1].power_w) * (pair[1].t_s - pair[0].t_s);
    }
    Some(energy)
}

/// Relative disagreement of the trace-integrated energy with the counter's: trace / counter - 1.
pub fn disagreement(counter_j: f64, trace_j: f64) -> Option<f64> {
    (counter_j > 0.0).then(|| trace_j / counter_j - 1.0)
}

/// Energy above idle: gross minus idle power over the same time, in J.
pub fn net_energy_j(gross_j: f64, idle_power_w: f64, duration_s: f64) -> f64 {
    gross_j - idle_power_w * duration_s
}

/// The counter reflects energy up to its last update, which lags the window's end by up to one
/// update period. The lag is filled with the power of the last complete update interval:
/// `last_interval_j / last_interval_s * lag_s`, the lag clamped to one interval.
pub fn tail_correction_j(last_interval_j: f64, last_interval_s: f64, lag_s: f64) -> f64 {
    if last_interval_s <= 0.0 || lag_s <= 0.0 {
        return 0.0;
    }
    last_interval_j / last_interval_s * lag_s.min(last_interval_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: f64, power_w: f64) -> PowerSample {
        PowerSample { t_s, power_w }
    }

    #[test]
    fn trapezoid_of_a_constant_trace_is_power_times_duration() {
        let trace: Vec<_> = (0..=10).map(|i| s(i as f64 * 0.1, 200.0)).collect();
        assert!((trapezoid_energy_j(&trace, 1.0).unwrap() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn trapezoid_integrates_a_ramp_exactly_and_holds_the_edges() {
        // 100 W at 0.5 s rising to 300 W at 1.5 s, window 0..2 s:
        // hold 100 W for 0.5 s (50 J) + ramp mean 200 W for 1 s (200 J) + hold 300 W for 0.5 s (150 J).
        let trace = [s(0.5, 100.0), s(1.0, 200.0), s(1.5, 300.0)];
        assert!((trapezoid_energy_j(&trace, 2.0).unwrap() - 400.0).abs() < 1e-9);
        assert_eq!(trapezoid_energy_j(&[], 1.0), None);
        // Samples outside the window are ignored.
        let outside = [s(-0.1, 1e6), s(0.5, 100.0), s(2.5, 1e6)];
        assert!((trapezoid_energy_j(&outside, 1.0).unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn disagreement_and_net_energy() {
        assert!((disagreement(100.0, 103.0).unwrap() - 0.03).abs() < 1e-12);
        assert_eq!(disagreement(0.0, 3.0), None);
        // 500 J over 5 s with 70 W idle: 150 J above idle.
        assert!((net_energy_j(500.0, 70.0, 5.0) - 150.0).abs() < 1e-12);
    }

    #[test]
    fn tail_correction_uses_the_last_interval_power_and_clamps_the_lag() {
        // 30 J in the last 0.1 s interval = 300 W; 40 ms lag -> 12 J.
        assert!((tail_correction_j(30.0, 0.1, 0.04) - 12.0).abs() < 1e-9);
        // A lag longer than one interval is clamped to one interval.
        assert!((tail_correction_j(30.0, 0.1, 0.5) - 30.0).abs() < 1e-9);
        assert_eq!(tail_correction_j(30.0, 0.0, 0.04), 0.0);
    }
}
