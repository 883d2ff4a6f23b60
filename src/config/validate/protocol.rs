//! `[protocol]`: warm-up, windows, loops and pauses, each bounded to what a run can use.

use super::{MAX_LOOPS, MAX_REPEATS, MAX_SECONDS};
use crate::config::ExperimentConfig;

pub(super) fn check(c: &ExperimentConfig, bad: &mut impl FnMut(&[&str], String)) {
    let p = &c.protocol;
    let seconds = [
        ("warmup_s", p.warmup_s),
        ("warmup_max_s", p.warmup_max_s),
        ("stabilize_s", p.stabilize_s),
        ("cooldown_s", p.cooldown_s),
        ("idle_settle_s", p.idle_settle_s),
        ("idle_baseline_s", p.idle_baseline_s),
    ];
    for (key, v) in seconds {
        if !(v.is_finite() && v >= 0.0) {
            bad(
                &["protocol", key],
                format!("protocol.{key} = {v}: must be a number of seconds >= 0"),
            );
        } else if v > MAX_SECONDS {
            bad(&["protocol", key], format!(
                "protocol.{key} = {v}: at most {MAX_SECONDS} seconds (one day); a longer pause or warm-up is surely a typo"
            ));
        }
    }
    if p.min_window_s > MAX_SECONDS {
        bad(
            &["protocol", "min_window_s"],
            format!(
                "protocol.min_window_s = {}: at most {MAX_SECONDS} seconds (one day) per window",
                p.min_window_s
            ),
        );
    }
    if !(p.min_window_s.is_finite() && p.min_window_s > 0.0) {
        bad(&["protocol", "min_window_s"], format!(
            "protocol.min_window_s = {}: must be > 0 seconds (a window of zero length measures nothing)",
            p.min_window_s
        ));
    }
    if p.warmup_max_s < p.warmup_s {
        bad(
            &["protocol", "warmup_max_s"],
            format!(
                "protocol.warmup_max_s = {} is shorter than protocol.warmup_s = {}",
                p.warmup_max_s, p.warmup_s
            ),
        );
    }
    if !(p.steady_tolerance.is_finite() && p.steady_tolerance > 0.0) {
        bad(
            &["protocol", "steady_tolerance"],
            format!(
                "protocol.steady_tolerance = {}: must be > 0 (e.g. 0.10 for 10 %)",
                p.steady_tolerance
            ),
        );
    }
    for (key, v) in [
        ("min_loops", p.min_loops),
        ("repeats", p.repeats),
        ("warmup_min_loops", p.warmup_min_loops),
    ] {
        let (max, why) = if key == "repeats" {
            (
                MAX_REPEATS,
                "windows per cell; a confidence interval needs a few",
            )
        } else {
            (
                MAX_LOOPS,
                "loops; every loop's latency is kept in the record",
            )
        };
        if v == 0 {
            bad(&["protocol", key], format!("protocol.{key} must be >= 1"));
        } else if v > max {
            bad(
                &["protocol", key],
                format!("protocol.{key} = {v}: at most {max} ({why})"),
            );
        }
    }
    if p.steady_tolerance > 10.0 {
        bad(
            &["protocol", "steady_tolerance"],
            format!(
                "protocol.steady_tolerance = {}: at most 10 (1000 %); e.g. 0.10 for 10 %",
                p.steady_tolerance
            ),
        );
    }
}
