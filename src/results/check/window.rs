//! The numbers of one measured unit read back: its warm-up and windows (loops, durations,
//! latencies, energies, counters, clocks), each finite, within what a measurement can give, and
//! consistent with the others of its window.

use super::{Problems, MAX_DURATION_S, MAX_POWER_W, MAX_WINDOWS};
use crate::measure::{WarmupRecord, WindowRecord, MAX_STORED_LOOPS};

/// The shortest loop a record may hold, in ms (a nanosecond: no forward pass is shorter).
const MIN_LOOP_MS: f64 = 1e-6;

pub(super) fn warmup(p: &mut Problems, at: &str, w: &WarmupRecord) {
    p.number(
        &format!("{at}.duration_s"),
        w.duration_s,
        0.0,
        MAX_DURATION_S,
    );
    p.number(
        &format!("{at}.first_loop_ms"),
        w.first_loop_ms,
        0.0,
        MAX_DURATION_S * 1e3,
    );
}

/// A unit's windows as measured: each of at least one loop, a duration, latencies that fit in
/// it (as many as the runner keeps of its loops), energies at a power a device can draw, in
/// every window or in none.
pub(super) fn windows(p: &mut Problems, at: &str, windows: &[WindowRecord], calls_per_loop: u32) {
    windows_of_steps(p, at, windows, calls_per_loop, 1);
}

/// As [`windows`], for windows stored per step: each measured loop ran `steps` steps, and the
/// record counts `loops` in steps (`loops` = measured loops x `steps`) with each latency divided
/// by `steps`, as a decoder's decode windows per generated token are.
pub(super) fn windows_of_steps(
    p: &mut Problems,
    at: &str,
    windows: &[WindowRecord],
    calls_per_loop: u32,
    steps: u32,
) {
    if windows.len() > MAX_WINDOWS {
        p.add(format!(
            "{at}windows: {} windows, more than protocol.repeats can ask for ({MAX_WINDOWS})",
            windows.len()
        ));
        return;
    }
    if calls_per_loop == 0 {
        p.add(format!("{at}calls_per_loop is 0"));
    }
    for (i, w) in windows.iter().enumerate() {
        let at = format!("{at}windows[{i}]");
        if w.loops == 0 {
            p.add(format!("{at}.loops is 0 (a window runs at least one loop)"));
        }
        if w.loop_ms_stride == 0 {
            p.add(format!("{at}.loop_ms_stride is 0"));
        }
        p.number(
            &format!("{at}.duration_s"),
            w.duration_s,
            1e-9,
            MAX_DURATION_S,
        );
        if w.loop_ms.is_empty() {
            p.add(format!("{at}.loop_ms is empty"));
        } else if w.loops > 0 && w.loop_ms_stride > 0 {
            loop_count(p, &at, w, steps);
        }
        // A loop cannot outlast its window (a small margin for the clock's rounding).
        let longest = w.duration_s.max(0.0) * 1e3 * 1.01 + 1.0;
        if let Some(bad) = w
            .loop_ms
            .iter()
            .find(|&&ms| !(ms.is_finite() && ms >= MIN_LOOP_MS && ms <= longest))
        {
            p.add(format!(
                "{at}.loop_ms holds {bad:?}, not a latency of a loop in a {:.3} s window",
                w.duration_s
            ));
        }
        // Energies: finite, non-negative, at a power a device can draw over the window; the
        // energy is the counter's delta plus the tail correction (sensor::nvml).
        let most = w.duration_s.max(0.0) * MAX_POWER_W;
        if let (Some(e), Some(delta), Some(tail)) =
            (w.energy_j, w.counter_delta_j, w.tail_correction_j)
        {
            if (e - (delta + tail)).abs() > 1e-6 * e.abs().max(1.0) {
                p.add(format!(
                    "{at}.energy_j is {e:?} J, but counter_delta_j + tail_correction_j is {:?} J",
                    delta + tail
                ));
            }
        }
        // Counter updates and power samples: at most one a microsecond (NVML gives one in ~10 ms).
        let most_events = w.duration_s.max(0.0) * 1e6 + 1e3;
        // The measuring thread: on a CPU at most the whole window (the clocks' granularity
        // aside), preempted at most once a microsecond.
        if let Some(h) = &w.host {
            if !h.thread_cpu_s.is_finite()
                || h.thread_cpu_s < 0.0
                || h.thread_cpu_s > w.duration_s.max(0.0) * 1.01 + 0.05
                || h.involuntary_switches as f64 > most_events
            {
                p.add(format!(
                    "{at}.host holds {:?} s of the thread's CPU time and {} preemptions in a {:.3} s window",
                    h.thread_cpu_s, h.involuntary_switches, w.duration_s
                ));
            }
        }
        if w.counter_ticks.is_some_and(|t| t as f64 > most_events)
            || w.num_power_samples as f64 > most_events
        {
            p.add(format!(
                "{at}: {} counter updates and {} power samples in a {:.3} s window",
                w.counter_ticks.unwrap_or(0),
                w.num_power_samples,
                w.duration_s
            ));
        }
        for (key, v) in [
            ("energy_j", w.energy_j),
            ("counter_delta_j", w.counter_delta_j),
            ("trace_energy_j", w.trace_energy_j),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0 && v <= most) {
                    p.add(format!(
                        "{at}.{key} is {v:?} J, not an energy a device spends in {:.3} s",
                        w.duration_s
                    ));
                }
            }
        }
        if let Some(v) = w.tail_correction_j {
            p.number(&format!("{at}.tail_correction_j"), v, -most, most);
        }
        super::domains::window_domains(p, &at, w);
        if let Some(reasons) = &w.throttle_reasons {
            if reasons.len() > MAX_SHORT_LIST || reasons.iter().any(|r| !short_word(r)) {
                p.add(format!(
                    "{at}.throttle_reasons is not a list of at most {MAX_SHORT_LIST} NVML reason names"
                ));
            }
        }
        for (key, v) in [
            ("sm_clock_min_mhz", w.sm_clock_min_mhz),
            ("sm_clock_max_mhz", w.sm_clock_max_mhz),
        ] {
            if let Some(v) = v {
                p.number(&format!("{at}.{key}"), f64::from(v), 0.0, MAX_CLOCK_MHZ);
            }
        }
        if let (Some(lo), Some(hi)) = (w.sm_clock_min_mhz, w.sm_clock_max_mhz) {
            if lo > hi {
                p.add(format!(
                    "{at}: sm_clock_min_mhz {lo} is above sm_clock_max_mhz {hi}"
                ));
            }
        }
    }
}

/// The latencies a window keeps of its loops, exactly as `measure::subsample` keeps them: every
/// loop up to [`MAX_STORED_LOOPS`], else every `stride`-th. `loops` is what energy and
/// throughput are divided by, so a count the latencies do not bear out is refused.
fn loop_count(p: &mut Problems, at: &str, w: &WindowRecord, steps: u32) {
    let steps = u64::from(steps.max(1));
    let loops = u64::from(w.loops);
    let measured = loops / steps;
    let stride = measured.div_ceil(MAX_STORED_LOOPS as u64).max(1);
    let kept = measured.div_ceil(stride);
    if loops % steps != 0
        || measured == 0
        || (w.loop_ms.len() as u64, u64::from(w.loop_ms_stride)) != (kept, stride)
    {
        let per_step = if steps > 1 {
            format!(" ({steps} steps a loop)")
        } else {
            String::new()
        };
        p.add(format!(
            "{at}.loop_ms holds {} latencies (stride {}) for {} loops{per_step}, but the runner keeps {kept} of them (stride {stride})",
            w.loop_ms.len(),
            w.loop_ms_stride,
            w.loops
        ));
    }
}

/// Energies in every window of a unit or in none: a unit half metered is a damaged record.
pub(super) fn energy_in_all_or_none(p: &mut Problems, at: &str, windows: &[WindowRecord]) -> bool {
    let metered = windows.iter().filter(|w| w.energy_j.is_some()).count();
    if metered != 0 && metered != windows.len() {
        p.add(format!(
            "{at}windows: {metered} of {} windows hold an energy (a sensor meters every window or none)",
            windows.len()
        ));
    }
    metered > 0
}

/// Entries of a short list of names a record holds (throttle reasons, metered domains).
pub(super) const MAX_SHORT_LIST: usize = 32;
/// Faster than any clock a GPU runs.
const MAX_CLOCK_MHZ: f64 = 100_000.0;

/// A name such as `sw_power_cap`, `gpu-board` or `13.0`: 1 to 64 printable ASCII characters.
pub(super) fn short_word(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
            throttle_reasons: Some(vec!["sw_power_cap".into()]),
            sm_clock_min_mhz: Some(1725),
            sm_clock_max_mhz: Some(1980),
            host: None,
            domain_energy_j: Default::default(),
        }
    }

    fn problems(ws: &[WindowRecord]) -> Vec<String> {
        let mut p = Problems::new(Path::new("x.json"));
        windows(&mut p, "", ws, 1);
        p.list
    }

    #[test]
    fn windows_that_no_measurement_gives_are_named() {
        assert!(problems(&[window()]).is_empty());
        type Edit = Box<dyn Fn(&mut WindowRecord)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("loops is 0", Box::new(|w| w.loops = 0)),
            ("-31.25 J", Box::new(|w| w.energy_j = Some(-31.25))),
            ("1e308 J", Box::new(|w| w.energy_j = Some(1e308))),
            ("NaN J", Box::new(|w| w.energy_j = Some(f64::NAN))),
            ("holds inf", Box::new(|w| w.loop_ms[3] = f64::INFINITY)),
            ("holds 0.0,", Box::new(|w| w.loop_ms[0] = 0.0)),
            ("duration_s is 0", Box::new(|w| w.duration_s = 0.0)),
            (
                "holds 12 latencies (stride 1) for 10 loops, but the runner keeps 10",
                Box::new(|w| w.loop_ms = vec![1.0; 12]),
            ),
            (
                "for 4294967295 loops, but the runner keeps 4096 of them (stride 1048576)",
                Box::new(|w| w.loops = u32::MAX),
            ),
            (
                "but counter_delta_j + tail_correction_j is 90.0 J",
                Box::new(|w| w.counter_delta_j = Some(90.0)),
            ),
            (
                "1000000000 counter updates",
                Box::new(|w| w.counter_ticks = Some(1_000_000_000)),
            ),
            (
                "1000000000.0 s of the thread's CPU time",
                Box::new(|w| {
                    w.host = Some(crate::measure::HostUsage {
                        thread_cpu_s: 1e9,
                        involuntary_switches: 0,
                    })
                }),
            ),
            ("not a latency", Box::new(|w| w.loop_ms[1] = 5e3)),
            (
                "throttle_reasons is not a list",
                Box::new(|w| w.throttle_reasons = Some(vec!["<b>".repeat(30)])),
            ),
            (
                "is above sm_clock_max_mhz",
                Box::new(|w| w.sm_clock_min_mhz = Some(2500)),
            ),
        ];
        for (expected, edit) in cases {
            let mut w = window();
            edit(&mut w);
            let found = problems(&[w]);
            assert!(
                found.iter().any(|m| m.contains(expected)),
                "{expected}: {found:?}"
            );
        }
        // Every third of 10,000 loops kept, as measure::subsample keeps them.
        let mut w = window();
        (w.loops, w.loop_ms, w.loop_ms_stride) = (10_000, vec![0.09; 3334], 3);
        assert!(problems(&[w.clone()]).is_empty());
        // Decode windows per step: 4 steps a loop, 10 loops measured.
        let steps = |w: &WindowRecord, k| {
            let mut p = Problems::new(Path::new("x.json"));
            windows_of_steps(&mut p, "", std::slice::from_ref(w), 1, k);
            p.list
        };
        let mut w = window();
        w.loops = 40;
        assert!(steps(&w, 4).is_empty());
        w.loops = 41;
        assert!(steps(&w, 4)[0].contains("(4 steps a loop)"));
        let mut p = Problems::new(Path::new("x.json"));
        let mut half = vec![window(), window()];
        half[1].energy_j = None;
        energy_in_all_or_none(&mut p, "", &half);
        assert!(
            p.list[0].contains("1 of 2 windows hold an energy"),
            "{:?}",
            p.list
        );
        let many = vec![window(); MAX_WINDOWS + 1];
        assert!(problems(&many)[0].contains("more than protocol.repeats"));
    }
}
